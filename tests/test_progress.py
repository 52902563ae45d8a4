"""Progress on stderr (tqdm): in place on a terminal, sparse whole lines elsewhere; training's text bar."""

import io

from maxswitch import bench
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
