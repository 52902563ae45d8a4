"""Progress on stderr (tqdm): in place on a terminal, sparse whole lines elsewhere; training's text bar."""

import io

import numpy as np

from maxswitch.evaluation import bench
from maxswitch.progress import Progress, bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_per_tenth_and_no_carriage_returns():
    out = io.StringIO()
    p = Progress(out)
    for i in range(1, 101):
        p(i, 100, f"img{i}.png")
    p.clear()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in out.getvalue()  # the first image, then each tenth
    assert all(line.startswith("bench [") and "elapsed" in line for line in lines)
    assert lines[1].startswith("bench [##..........................] 10/100 ")
    assert lines[-1].startswith("bench [############################] 100/100 ")
    short = io.StringIO()
    q = Progress(short)
    for i in range(1, 4):
        q(i, 3, "x")
    assert len(short.getvalue().splitlines()) == 3  # fewer items than tenths: a line each


def test_a_terminal_gets_one_bar_redrawn_in_place_with_the_current_image():
    out = Terminal()
    p = Progress(out)
    p(1, 3, "a/img1.png")
    p.clear()  # a warning now starts on a clean line
    p(2, 3, "b/img0.png")
    p(3, 3, "img2.jpg")
    text = out.getvalue()
    assert "\r" in text and "bench [" in text and "2/3" in text and "b/img0.png" in text
    assert text.endswith("\n") and text.count("\n") == 1  # one line left behind when done
    assert text.rsplit("\r", 1)[-1].startswith("bench [############################] 3/3")


def test_bench_offers_the_same_progress_callback():
    assert bench.Progress is Progress


def test_training_bar_text():
    assert bar(0.25) == "[#####...............]  25%"
    assert bar(0.0) == "[....................]   0%"
    assert bar(1.7) == "[####################] 100%"
    assert bar(-1) == bar(0) and len(bar(0.5, width=10)) == len("[..........]  50%")


def test_workbar_draws_on_a_terminal_only_and_not_when_quiet():
    from maxswitch.progress import WorkBar, counted

    out = Terminal()
    with WorkBar(100, "big.msw", "rows", stream=out, delay=0) as b:
        bands = list(counted(iter([np.zeros((40, 2, 3)), np.zeros((60, 2, 3))]), b))
        assert b.write("big.msw: decoded")
    assert len(bands) == 2 and "big.msw [" in out.getvalue() and "100/100" in out.getvalue()
    assert "big.msw: decoded" in out.getvalue()
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):  # a log or a pipe; --quiet
        with WorkBar(100, "x", "rows", stream=stream, enabled=enabled) as b:
            b.update(100)
            assert not b.write("msg")
        assert stream.getvalue() == ""


def test_workbar_waits_for_its_delay():
    from maxswitch.progress import WorkBar

    out = Terminal()
    with WorkBar(10, "quick", "tiles", stream=out, delay=60) as b:
        b.update(10)
    assert "quick" not in out.getvalue()  # work done before the delay prints nothing


def test_encode_reports_progress_over_its_tiles(tiny_zoo):
    from conftest import make_image, png_bytes

    import maxswitch

    seen = []
    maxswitch.encode(png_bytes(make_image(300, 140)), tiny_zoo, tile=64, progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert seen[-1][0] == total and total == 5 * 3 + 1 + 1  # 15 encoder tiles, 1 table tile, zstd
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
