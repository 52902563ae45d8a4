"""The benchmark: image discovery, the quality search, every codec's records checked against
independent encodes, summaries, JSON/CSV/plot outputs, determinism across workers, the CLI."""

import csv
import io
import json
import math

import numpy as np
import pytest
from conftest import make_image, run_cli
from PIL import Image

from maxswitch import cli, codec, image
from maxswitch.evaluation import bench, plot, report

QUALITIES = (20, 80)
TIME_FIELDS = ("encode_s", "decode_s")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three readable images in nested folders, one damaged image, a text file, a hidden file."""
    d = tmp_path_factory.mktemp("data")
    (d / "a").mkdir()
    (d / "b").mkdir()
    make_image(176, 168, seed=1).save(d / "a" / "img1.png")
    make_image(170, 165, seed=2).save(d / "b" / "img0.png")
    make_image(120, 90, seed=3).convert("L").save(d / "img2.jpg", quality=95)  # grey, too small for MS-SSIM
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "README.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"")
    return d


@pytest.fixture(scope="module")
def model_path(tiny_model):
    return str(tiny_model[0])


@pytest.fixture(scope="module")
def calls():
    return {"warn": [], "progress": []}


@pytest.fixture(scope="module")
def result(dataset, model_path, calls):
    return bench.run(
        dataset,
        [model_path],
        qualities=QUALITIES,
        jobs=1,
        warn=calls["warn"].append,
        progress=lambda *a: calls["progress"].append(a),
    )


def _rec(result, image_name, codec_name, **kw):
    out = [
        r
        for r in result.records
        if r.image == image_name and r.codec == codec_name and all(getattr(r, k) == v for k, v in kw.items())
    ]
    assert len(out) == 1, (image_name, codec_name, kw, out)
    return out[0]


def _original(path) -> np.ndarray:
    """The picture as its file holds it, what bench measures against: (H, W) for greyscale
    (as decode writes a greyscale image), else (H, W, 3)."""
    im = Image.open(path)
    return np.asarray(im if im.mode == "L" else im.convert("RGB"))


def _pillow(x: np.ndarray, fmt: str, q: int) -> tuple[int, np.ndarray]:
    """An independent encode: file size and decoded pixels (greyscale in, greyscale out)."""
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, fmt, quality=q)
    return len(buf.getvalue()), np.asarray(Image.open(buf).convert("L" if x.ndim == 2 else "RGB"))


def _psnr(x, y):
    """PSNR written out differently from metrics.psnr: float sums in pure Python."""
    d = (x.astype(np.int64) - y.astype(np.int64)).ravel()
    m = sum(int(v) * int(v) for v in d) / d.size
    return math.inf if m == 0 else 10 * math.log10(255**2 / m)


# ------------------------------------------------------------------ pieces


def test_list_images_is_recursive_sorted_and_splits_other_files(dataset):
    images, others = bench.list_images(dataset)
    assert images == ["a/img1.png", "b/img0.png", "broken.png", "img2.jpg"]
    assert others == ["README.txt"]
    with pytest.raises(bench.BenchError, match="not a folder"):
        bench.list_images(dataset / "README.txt")


def _counted(f):
    seen = []

    def g(q):
        seen.append(q)
        return f(q)

    return g, seen


@pytest.mark.parametrize("target", [0.5, 3.0, 10.0, 10.5, 57.3])
def test_search_quality_at_most(target):
    f, seen = _counted(lambda q: q / 2)  # 0.0 .. 50.0
    q, status = bench.search_quality(f, target, 0, 100, at_most=True)
    best = max(q for q in range(101) if q / 2 <= target)
    assert (q, status) == ((best, "ok") if target <= 50 else (100, "capped"))
    assert len(set(seen)) <= 9  # bisection, not a scan


@pytest.mark.parametrize("target", [-1.0, 0.0, 3.3, 99.0, 101.0])
def test_search_quality_at_least(target):
    f, seen = _counted(lambda q: float(q))
    q, status = bench.search_quality(f, target, 1, 100, at_most=False)
    if target > 100:
        assert (q, status) == (100, "capped")
    elif target < 1:
        assert (q, status) == (1, "floor")
    else:
        assert (q, status) == (math.ceil(target), "ok")
    assert len(set(seen)) <= 9


def test_search_quality_floor_for_rates():
    assert bench.search_quality(lambda q: 5.0 + q, 1.0, 0, 100, at_most=True) == (0, "floor")


@pytest.mark.parametrize("fmt,q", [("JPEG", 50), ("WEBP", 30), ("WEBP", 75)])
def test_quality_search_on_a_real_image(fmt, q):
    # Targets from independent encodes at q. The search returns a crossing: the quality just
    # reaches the target and the next one down (PSNR) or up (bpp) does not. Pillow's WebP is
    # not strictly monotone in its quality, so the crossing may sit a few steps from q.
    x = np.asarray(make_image(200, 176, seed=7))
    size, y = _pillow(x, fmt, q)
    rate = lambda q: 8 * _pillow(x, fmt, q)[0] / (200 * 176)  # noqa: E731
    target_psnr, target_bpp = _psnr(x, y), rate(q)
    lo, hi = bench.QUALITY_RANGE[fmt.lower()]
    t = bench._Trials(fmt, x)
    got, status = bench.search_quality(t.psnr, target_psnr, lo, hi, at_most=False)
    assert status == "ok" and abs(got - q) <= 5
    assert _psnr(x, _pillow(x, fmt, got)[1]) >= target_psnr > _psnr(x, _pillow(x, fmt, got - 1)[1])
    got, status = bench.search_quality(t.bpp, target_bpp, lo, hi, at_most=True)
    assert status == "ok" and abs(got - q) <= 5
    assert rate(got) <= target_bpp < rate(got + 1)
    rec = t.record("x.png", fmt.lower(), got)
    assert rec.bpp == rate(got) and rec.quality == got


def test_raw_bpp_matches_the_papers_accounting():
    assert bench.raw_bpp((16, 16, 16)) == 10.5  # 3.5 bits per pixel value x 3
    assert bench.raw_bpp((8, 8, 8)) == 5.25
    assert bench.raw_bpp((48, 96, 192)) == 42.0


# ------------------------------------------------------------------ one run, checked independently


def test_run_lists_skips_and_reports(result, calls):
    assert result.images == ["a/img1.png", "b/img0.png", "img2.jpg"]
    assert [s[0] for s in result.skipped] == ["broken.png"]
    assert result.ignored == ["README.txt"]
    assert len(calls["warn"]) == 1 and calls["warn"][0].startswith("skipped broken.png: ")
    assert [c[:2] for c in calls["progress"]] == [(i, 4) for i in range(1, 5)]
    # per image: the model, PNG, 2 qualities x 2 codecs, 2 codecs x 2 matches
    assert len(result.records) == 3 * (1 + 1 + 4 + 4)
    assert [r.image for r in result.records] == sorted(r.image for r in result.records)


def test_model_records_match_the_codec(result, dataset, model_path):
    for name in result.images:
        r = _rec(result, name, "maxswitch")
        loaded = image.load((dataset / name).read_bytes())
        data = codec.encode(loaded, model_path)
        inf = codec.info(data)
        assert r.bpp == pytest.approx(8 * len(data) / (inf["width"] * inf["height"]), abs=1e-12)
        assert r.bpp == pytest.approx(inf["bpp"], abs=1e-4)
        assert r.bits_per_switch == pytest.approx(inf["bits_per_switch"], abs=1e-4)
        assert r.raw_bpp == pytest.approx(inf["raw_bpp"], abs=1e-4)
        written = np.asarray(codec.decode(data, model_path, threads=1))  # the picture decode writes
        assert r.psnr == pytest.approx(_psnr(_original(dataset / name), written), abs=1e-9)
        assert r.encode_s > 0 and r.decode_s > 0


def test_baselines_are_pillows_codecs(result, dataset):
    for name in result.images:
        x = _original(dataset / name)
        h, w = x.shape[:2]
        for c, fmt in (("jpeg", "JPEG"), ("webp", "WEBP")):
            for q in QUALITIES:
                r = _rec(result, name, c, quality=q, match="")
                size, y = _pillow(x, fmt, q)
                assert r.bpp == pytest.approx(8 * size / (w * h), abs=1e-12)
                assert r.psnr == pytest.approx(_psnr(x, y), abs=1e-9)
                assert r.rmse == pytest.approx(math.sqrt(np.mean((x / 255 - y / 255) ** 2)), abs=1e-12)
        png = _rec(result, name, "png")
        assert png.psnr == math.inf and png.rmse == 0 and png.ssim == 1.0
        assert png.bpp > _rec(result, name, "jpeg", quality=80, match="").bpp
    small = _rec(result, "img2.jpg", "jpeg", quality=80, match="")
    assert small.ms_ssim is None and small.ssim is not None  # 90 px high: MS-SSIM does not apply
    assert _rec(result, "a/img1.png", "jpeg", quality=80, match="").ms_ssim is not None


def test_matched_baselines_are_the_right_qualities(result, dataset):
    for name in result.images:
        x = _original(dataset / name)
        h, w = x.shape[:2]
        m = _rec(result, name, "maxswitch")
        for c, fmt in (("jpeg", "JPEG"), ("webp", "WEBP")):
            lo, hi = bench.QUALITY_RANGE[c]
            rate = lambda q: 8 * _pillow(x, fmt, q)[0] / (w * h)  # noqa: E731
            r = _rec(result, name, c, match="bpp")
            assert r.model == m.model and r.bpp == pytest.approx(rate(r.quality))
            if r.status == "ok":
                assert r.bpp <= m.bpp and (r.quality == hi or rate(r.quality + 1) > m.bpp)
            else:
                assert r.status == "capped" and r.quality == hi and r.bpp < m.bpp
            r = _rec(result, name, c, match="psnr")
            if r.status == "ok":
                assert r.psnr >= m.psnr and _psnr(x, _pillow(x, fmt, r.quality - 1)[1]) < m.psnr
            else:
                assert r.status == "floor" and r.quality == lo and r.psnr > m.psnr


def test_summary_rows_and_means(result):
    rows = report.summarise(result)
    labels = [r.label for r in rows]
    m = "tiny-4-6-8"
    assert labels == [
        m,
        f"JPEG at the bpp of {m}",
        f"WebP at the bpp of {m}",
        f"JPEG at the PSNR of {m}",
        f"WebP at the PSNR of {m}",
        "PNG (lossless)",
        "JPEG q=20",
        "JPEG q=80",
        "WebP q=20",
        "WebP q=80",
    ]
    jq = rows[labels.index("JPEG q=80")]
    recs = [r for r in result.records if r.codec == "jpeg" and r.quality == 80 and not r.match]
    assert jq.n == 3
    assert jq.bpp == pytest.approx(sum(r.bpp for r in recs) / 3)
    assert jq.psnr == pytest.approx(sum(r.psnr for r in recs) / 3)  # mean of per-image PSNRs
    assert jq.rmse == pytest.approx(math.sqrt(sum(r.rmse**2 for r in recs) / 3))  # root of the mean MSE
    assert jq.ms_ssim == pytest.approx(sum(r.ms_ssim for r in recs if r.ms_ssim is not None) / 2)
    assert rows[labels.index("PNG (lossless)")].psnr == math.inf
    match = rows[1]
    assert match.q_min <= match.q_mean <= match.q_max and sum(match.status.values()) == 3


def test_report_has_every_table(result):
    text = report.format_report(result)
    assert "models: tiny-4-6-8 v1 (SHA-256 " in text
    assert "3 images" in text and "1 unreadable image file(s) skipped" in text and "1 other file(s) ignored" in text
    for label in ("tiny-4-6-8", "JPEG at the bpp of tiny-4-6-8", "PNG (lossless)", "WebP q=80", "encode MP/s"):
        assert label in text
    assert "vs JPEG: at no more bits" in text
    assert "Table II" not in text  # channels 4,6,8 are not in the paper
    md = report.format_report(result, markdown=True)
    assert "| codec | bpp | PSNR dB |" in md and "| ---: |" in md


def test_paper_table_where_the_architecture_matches(result):
    fake = bench.BenchResult(**{**result.__dict__, "models": [bench.ModelInfo("tiny-4-6-8", "x", (16, 16, 16))]})
    text = report.paper_table(fake, report.summarise(fake))
    assert "0.1210" in text and "18.34" in text and "10.50" in text


def test_json_is_compressai_schema(result, tmp_path):
    ((path, data),) = report.json_outputs(result, str(tmp_path / "r.json")).items()
    d = json.loads(data, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    # one curve per model family and coding: a model given by path is a "user" model
    assert d["name"] == "maxswitch user (auto)" and isinstance(d["description"], str)
    assert d["curves"] == [] and any(b["reference"] == "JPEG sweep" for b in d["bd_rate"])
    assert d["results"]["bpp"] == [pytest.approx(report.summarise(result)[0].bpp)]
    for k in (
        "psnr-rgb",
        "psnr",
        "ms-ssim-rgb",
        "msssim",
        "ssim-rgb",
        "rmse",
        "encoding_time",
        "decoding_time",
        "bits_per_switch",
    ):
        assert len(d["results"][k]) == 1
    names = [b["name"] for b in d["baselines"]]
    assert names[:3] == ["JPEG", "WebP", "PNG"] and "WebP at the PSNR of tiny-4-6-8" in names
    jpeg = d["baselines"][0]["results"]
    assert jpeg["quality"] == list(QUALITIES) and len(jpeg["bpp"]) == len(jpeg["psnr-rgb"]) == 2
    assert d["baselines"][2]["results"]["psnr-rgb"] == [None]  # lossless: no finite PSNR
    assert d["images"] == result.images and d["skipped"][0]["image"] == "broken.png"
    assert (
        d["models"] == [{"name": "tiny-4-6-8", "version": 1, "sha256": result.models[0].sha256, "channels": [4, 6, 8]}]
        and len(result.models[0].sha256) == 64
    )


def test_json_folder_gives_one_file_per_curve(result, tmp_path):
    out = report.json_outputs(result, str(tmp_path) + "/")
    names = sorted(p.rsplit("/", 1)[1] for p in out)
    assert names[:3] == ["jpeg-at-the-bpp-of-tiny-4-6-8.json", "jpeg-at-the-psnr-of-tiny-4-6-8.json", "jpeg.json"]
    assert "maxswitch-user-auto.json" in names and "png.json" in names and len(names) == 8
    for data in out.values():
        d = json.loads(data)
        assert set(d) == {"name", "description", "results"} and "bpp" in d["results"]


def test_csv_has_one_row_per_record(result):
    rows = list(csv.DictReader(io.StringIO(report.csv_bytes(result).decode())))
    assert len(rows) == len(result.records)
    png = next(r for r in rows if r["codec"] == "png")
    assert png["psnr"] == "inf" and png["bits_per_switch"] == ""
    first = result.records[0]
    assert float(rows[0]["bpp"]) == first.bpp and rows[0]["image"] == first.image


def test_plot_is_a_png(result):
    pytest.importorskip("matplotlib")
    data = plot.plot_bytes(result, "png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(data))
    assert im.width > 800 and im.height > 400


# ------------------------------------------------------------------ the command


def test_cli_with_two_workers_gives_the_same_figures(result, dataset, model_path, tmp_path):
    out_csv, out_json = tmp_path / "r.csv", tmp_path / "r.json"
    r = run_cli(
        "bench", dataset, "-m", model_path, "-j", "2", "--qualities", "80,20", "--csv", out_csv, "--json", out_json
    )
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "warning: skipped broken.png" in err and "Traceback" not in err
    assert "bench [" in err  # progress on stderr, never on stdout
    out = r.stdout.decode()
    assert "bench [" not in out and "JPEG at the PSNR of tiny-4-6-8" in out
    rd = lambda text: text.split("Speed")[0]  # noqa: E731 - everything but the times
    assert rd(out) == rd(report.format_report(result))
    strip = lambda rows: [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in rows]  # noqa: E731
    mine = list(csv.DictReader(io.StringIO(report.csv_bytes(result).decode())))
    theirs = list(csv.DictReader(out_csv.open()))
    assert strip(theirs) == strip(mine)
    assert json.loads(out_json.read_text())["name"] == "maxswitch user (auto)"


def _main(capsys, *args):
    code = cli.main(["bench", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_cli_errors_are_one_line(capsys, dataset, model_path, tmp_path, monkeypatch):
    code, err = _main(capsys, dataset / "README.txt", "-m", model_path)
    assert code == 1 and "is not a folder" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, err = _main(capsys, tmp_path / "empty", "-m", model_path)
    assert code == 1 and "no images found" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    code, err = _main(capsys, tmp_path / "bad", "-m", model_path, "--quiet")
    assert code == 1 and "none of the 1 image files" in err
    code, err = _main(capsys, dataset, "-m", "no-such-model")
    assert code == 1 and "unknown model" in err
    for args in (
        ["-m", model_path, "--all-models"],
        ["--qualities", "5,x"],
        ["--qualities", "0,50"],
        ["--plot", tmp_path / "p.txt"],
        ["--csv", tmp_path / "nope" / "r.csv"],
        ["--csv", tmp_path],
        ["--json", tmp_path / "nope" / "r.json"],
    ):
        code, err = _main(capsys, dataset, *args)
        assert code == 2 and "usage error" in err, (args, err)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    code, err = _main(capsys, dataset, "-m", model_path, "--plot", tmp_path / "p.png")
    assert code == 1 and "pip install 'maxswitch[bench]'" in err and len(err.strip().splitlines()) == 1


def test_cli_writes_plot_and_markdown(capsys, dataset, model_path, tmp_path):
    pytest.importorskip("matplotlib")
    code = cli.main(
        [
            "bench",
            str(dataset),
            "-m",
            model_path,
            "-j",
            "1",
            "--qualities",
            "50",
            "--limit",
            "1",
            "--markdown",
            "--quiet",
            "--plot",
            str(tmp_path / "rd.png"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "| tiny-4-6-8 |" in out and "1 image," in out
    assert (tmp_path / "rd.png").read_bytes().startswith(b"\x89PNG")


def test_cli_without_baselines(capsys, dataset, model_path):
    code = cli.main(["bench", str(dataset), "-m", model_path, "-j", "1", "--no-baselines", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "tiny-4-6-8" in out and "JPEG" not in out and "PNG" not in out


def test_both_codings_give_two_curves_and_a_bd_rate_between_them(dataset, model_path):
    r = bench.run(dataset, [model_path + "@context", model_path + "@zstd"], baselines=False, jobs=1)
    rows = report.summarise(r)
    curves = report.family_curves(r, rows)
    assert set(curves) == {"maxswitch user (context)", "maxswitch user (zstd)"}
    ctx, zst = (curves[k][0] for k in ("maxswitch user (context)", "maxswitch user (zstd)"))
    assert ctx.psnr == zst.psnr  # the same switches, decoded by the same decoder
    text = report.format_report(r)
    assert "maxswitch user (context) against maxswitch user (zstd)" in text
    assert "JPEG" not in text.split("BD-rate")[0].split("models:")[1]  # no baselines measured


def _reference_file(path, bpp, psnr, name="old ladder"):
    path.write_text(json.dumps({"name": name, "results": {"bpp": bpp, "psnr-rgb": psnr}}))
    return path


def test_a_reference_at_twice_the_rate_gives_minus_50_percent(capsys, dataset, model_path, tmp_path):
    """Through the CLI: a two-point curve (the tiny model and a copy whose decoder is damped,
    so the same rate at another PSNR) against a reference that spends exactly twice the rate
    at the same two PSNRs: BD-rate -50.0%."""
    import torch

    from maxswitch.networks.zoo import load_model, save_model

    m = load_model(model_path)
    damped = tmp_path / "tiny-damped.safetensors"
    dec = __import__("copy").deepcopy(m.decoder)
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(0.5)
    save_model(damped, "tiny-damped", 1, m.config, m.encoder, dec, context=m.context)
    base = ["--limit", "1", "--no-baselines", "--quiet", "--coding", "context", "-j", "1"]
    r = bench.run(dataset, [model_path + "@context", str(damped) + "@context"], baselines=False, jobs=1, limit=1)
    pts = report.family_curves(r, report.summarise(r))["maxswitch user (context)"]
    assert len(pts) == 2 and pts[0].psnr != pts[1].psnr
    ref = _reference_file(tmp_path / "ref.json", [2 * x.bpp for x in pts], [x.psnr for x in pts])
    code = cli.main(["bench", str(dataset), "-m", model_path, "-m", str(damped), *base, "--reference", str(ref)])
    out = capsys.readouterr().out
    assert code == 0 and "maxswitch user (context) against old ladder: BD-rate -50.0%" in out


def test_reference_in_json_plot_and_report(capsys, dataset, model_path, tmp_path):
    ref = _reference_file(tmp_path / "ref.json", [0.5, 8.0], [10.0, 60.0])
    args = ["--limit", "2", "--no-baselines", "--quiet", "--reference", str(ref), "--json", str(tmp_path / "r.json")]
    code = cli.main(["bench", str(dataset), "-m", model_path + "@context", "-m", model_path + "@zstd", *args])
    out = capsys.readouterr().out
    assert code == 0 and "maxswitch user (zstd) against old ladder: no BD-rate (no shared PSNR range" in out
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["references"] == [{"name": "old ladder", "file": "ref.json"}]
    assert {b["curve"] for b in d["bd_rate"] if b["reference"] == "old ladder"} == {
        "maxswitch user (context)",
        "maxswitch user (zstd)",
    }


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "No such file"),
        ("{not json", "not JSON"),
        ('{"name": "x", "results": {"bpp": [1, 2]}}', "CompressAI's schema"),
        ('{"name": "x", "results": {"bpp": [1], "psnr-rgb": [20]}}', "at least 2 points"),
    ],
)
def test_bad_reference_is_one_line_before_any_work(capsys, dataset, model_path, tmp_path, content, words):
    ref = tmp_path / "ref.json"
    if content is not None:
        ref.write_text(content)
    code, err = _main(capsys, dataset, "-m", model_path, "--reference", ref)
    assert code == 1 and words in err and len(err.strip().splitlines()) == 1
