"""Training on a CUDA device: the switches it trains on are the CPU's, bit for bit.

These tests need a CUDA device and are skipped without one (CI has none); they were run on
the GPU machine by ``benchmarks/gpu_train.sh``, which records their output.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import make_image

from maxswitch import codec
from maxswitch.networks.zoo import load_model
from maxswitch.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")


def _rgb(w=96, h=64, seed=0) -> np.ndarray:
    return np.asarray(make_image(w, h, seed))


def test_training_on_cuda_sees_the_cpu_switches():
    """precompute() encodes on the CPU and only moves the result: the codes are the codec's."""
    m = load_model("natural-16-16-16")
    rgb = _rgb()
    data = train.precompute(m.encoder, [rgb], flips=False).to(torch.device("cuda"))
    want = codec.compute_switches(m, rgb)
    for got, ref in zip(data.codes[0], want):
        assert got.device.type == "cuda"
        assert np.array_equal(got.cpu().numpy(), ref)


@pytest.mark.parametrize("tf32", [False, True])
def test_reference_encoder_on_cuda(tf32, capsys):
    """The encoder's plain formulation on the GPU, against the CPU's switches.

    Without TF32 every partial sum is an integer below 2^24, exact in float32 whatever the
    summation order, so the switches must agree. With TF32 (10-bit mantissas) they need
    not: the outcome is printed, not asserted, which is why training never encodes there.
    """
    m = load_model("natural-16-16-16")
    rgb = _rgb(128, 96, seed=3)
    want = codec.compute_switches(m, rgb)
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        enc = copy.deepcopy(m.encoder).to("cuda")  # load_model's object is shared: never move it
        img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].to("cuda")
        got = [c[0].cpu().numpy() for c in enc.forward_reference(img)]
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
    differ = sum(int((g != r).sum()) for g, r in zip(got, want))
    with capsys.disabled():
        print(f"\nreference encoder on cuda, tf32={tf32}: {differ} of {sum(r.size for r in want)} switches differ")
    if not tf32:
        assert differ == 0


def test_train_on_cuda_with_amp_writes_a_model_that_decodes_on_cpu(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        make_image(64, 64, seed=i).save(folder / f"{i}.png")
    out = tmp_path / "m.safetensors"
    recipe = train.Recipe(patch=32, batch=4, steps=5, minutes=None, device="cuda", amp=True)
    cfg = train.ModelConfig((4, 4, 4), "direct", (8, 8, 8))
    rec = train.train(str(folder), str(out), "gpu-test", cfg, recipe, log=lambda m: None)
    assert rec["steps"] == 5 and rec["device"] != "cpu"
    m = load_model(str(out))
    img = codec.decode(codec.encode(make_image(64, 48), model=m), model=m)
    assert img.size == (64, 48)


def test_audit_on_cuda_reads_the_network_there(tmp_path):
    """maxswitch audit on CUDA: the network's switches are computed on the GPU (float networks
    have no exact-arithmetic promise to keep), the decoders train there with --amp, and the
    probe's forward is kept out of autocast."""
    import json

    from click.testing import CliRunner

    from maxswitch.cli import cli

    (tmp_path / "imgs").mkdir()
    for i in range(4):
        make_image(64, 48, seed=i).save(tmp_path / "imgs" / f"im{i}.png")
    net = tmp_path / "net.py"
    net.write_text(
        "from torch import nn\n"
        "def two_pools():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1))\n"
    )
    out = tmp_path / "r.json"
    args = ["audit", f"{net}:two_pools", str(tmp_path / "imgs"), "--steps", "3", "--batch", "2", "--patch", "32"]
    r = CliRunner().invoke(cli, [*args, "--device", "cuda", "--amp", "--workers", "0", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["training"]["device"] != "cpu" and len(rep["rows"]) == 2
