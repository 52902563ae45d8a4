"""Finding a network's max poolings and reading their switches (maxswitch/networks/pooling.py)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maxswitch.networks.nets import Encoder
from maxswitch.networks.pooling import PoolingError, Probe, window_positions

UNIT = lambda x: x.float() / 255  # noqa: E731


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,ceil",
    [
        (2, 2, 0, 1, False),
        (3, 2, 1, 1, False),  # ResNet's stem: overlapping windows, padding
        (3, 1, 1, 1, False),  # stride 1: every cell in nine windows
        (3, 2, 0, 1, True),  # ceil mode: a last window that hangs over the edge
        (2, 3, 0, 1, False),  # gaps between windows
        (3, 2, 1, 2, False),  # dilation
        ((2, 3), (1, 2), (1, 0), 1, True),
    ],
)
def test_switches_are_positions_inside_their_window_that_hold_its_maximum(kernel, stride, padding, dilation, ceil):
    g = torch.Generator().manual_seed(0)
    # few distinct values: many ties, which torch breaks by its own scan order
    x = torch.randint(0, 5, (2, 3, 13, 11), generator=g).float()
    out, idx = F.max_pool2d(x, kernel, stride, padding, dilation, ceil, return_indices=True)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    d = (dilation, dilation)
    pos = window_positions(idx, x.shape[-1], s, p, d, k)
    assert pos.min() >= 0 and pos.max() < k[0] * k[1]
    h, w = out.shape[-2:]
    for b, c, i, j in itertools.product(range(2), range(3), range(h), range(w)):
        a, col = divmod(int(pos[b, c, i, j]), k[1])
        r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + col * d[1]
        assert 0 <= r < x.shape[-2] and 0 <= q < x.shape[-1]  # inside the input, never the padding
        assert x[b, c, r, q] == out[b, c, i, j]


def test_a_maxswitch_encoder_probed_as_any_network_gives_its_own_codes():
    """The encoder's plain formulation calls F.max_pool2d: probed, its switches are the codes
    maxswitch writes (row * 2 + column is the 2x2 case of a * kW + b)."""
    enc = Encoder.random((4, 6, 8), seed=1)

    class Plain(nn.Module):
        def forward(self, img):
            return enc.forward_reference(img)

    probe = Probe(Plain(), lambda x: x)
    layers = probe.discover(32)
    assert [lay.kind for lay in layers] == ["functional"] * 3 and layers[0].site.startswith("nets.py:")
    img = torch.randint(0, 256, (2, 3, 40, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    got = probe.switches(img, 3)
    want = enc(img)
    assert all(torch.equal(a, b.long()) for a, b in zip(got, want))


class Mixed(nn.Module):
    """A module pooling layer used twice, a functional call, and a layer that must never run."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.calls_after = 0

    def forward(self, x):
        x = self.pool(self.conv(x))
        x = F.max_pool2d(x, 2, ceil_mode=True)
        x = self.pool(x)
        self.calls_after += 1
        return F.adaptive_max_pool2d(x, 1)


def test_module_and_functional_pools_are_found_named_and_the_forward_stops_at_the_deepest():
    net = Mixed()
    probe = Probe(net, UNIT)
    layers = probe.discover(32)
    assert [(lay.name, lay.kind, lay.window()) for lay in layers] == [
        ("pool", "module", "3x3/2 pad 1"),
        ("<model>:max_pool2d", "functional", "2x2/2 ceil"),
        ("pool#2", "module", "3x3/2 pad 1"),
    ]
    assert layers[1].site.startswith("test_pooling.py:")
    assert [lay.out_shape for lay in layers] == [(4, 16, 16), (4, 8, 8), (4, 4, 4)]
    assert [lay.level for lay in layers] == [1, 2, 3] and layers[0].positions == 9
    assert any("adaptive max pooling" in n for n in probe.notes)
    net.calls_after = 0
    codes = probe.switches(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 2)
    assert len(codes) == 2 and net.calls_after == 0  # stopped after the second pooling
    assert codes[0].shape == (1, 4, 16, 16) and int(codes[0].max()) < 9


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_a_scripted_module_is_caught_too():
    class Net(nn.Module):
        def forward(self, x):
            return F.max_pool2d(x, 2)

    probe = Probe(torch.jit.script(Net()), UNIT)
    assert len(probe.discover(16)) == 1


def test_a_network_without_max_pooling_is_refused_in_one_line():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AvgPool2d(2))
    with pytest.raises(PoolingError, match="no 2-D max pooling") as e:
        Probe(net, UNIT).discover(16)
    assert "\n" not in str(e.value)


def test_a_network_failing_before_its_first_pool_names_the_error():
    net = nn.Sequential(nn.Conv2d(5, 4, 3), nn.MaxPool2d(2))  # expects 5 channels
    with pytest.raises(PoolingError, match="failed on a 16 x 16 image before any max pooling"):
        Probe(net, UNIT).discover(16)


def test_an_error_after_the_pools_keeps_them_and_says_so():
    class Head(nn.Module):
        def forward(self, x):
            return nn.functional.linear(F.max_pool2d(x, 2).flatten(1), torch.zeros(3, 7))

    probe = Probe(Head(), UNIT)
    assert len(probe.discover(16)) == 1
    assert any("stopped at an error after max pooling 1" in n for n in probe.notes)
