"""The compiled step form's harder cases against the ONNX neurons: a prefix current that a stage
also reads while several steps run a call, a broadcast Add across stages in the blocked layout,
Poisson spikes straight into a blocked layer, two runs of one session read in turn, and the
memory budget bounding the steps a call."""

from __future__ import annotations

import os

import numpy as np
import pytest

import onnx2snn
from onnx2snn.runtime import blocked, kernel

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional  # noqa: E402

from tests.helpers import export_torch  # noqa: E402

pytestmark = pytest.mark.skipif(not kernel.available() and not os.environ.get("CI"), reason=kernel.why_unavailable())


def _same(snn, x, steps, **options):
    compiled = onnx2snn.SNNSession(snn, form="step", **options)
    plain = onnx2snn.SNNSession(snn, form="step", neurons="onnx", **options)
    assert compiled.neurons == "compiled"
    np.testing.assert_array_equal(compiled.run(x, steps, per_step=True), plain.run(x, steps, per_step=True))
    return compiled


class PreActivation(nn.Module):
    """h = conv(x) feeds an IF layer and, unchanged, a residual Add a stage later."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        h = self.c1(x)
        return self.fc(torch.relu(self.c2(torch.relu(h)) + h).flatten(1))


class LateBroadcast(nn.Module):
    """A global pool computed in one stage, added over H x W to a convolution a stage later."""

    def __init__(self, c=16):
        super().__init__()
        self.c0, self.a = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.b, self.d = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Linear(c * 8 * 8, 5)

    def forward(self, x):
        r1 = torch.relu(self.c0(x))
        g = functional.adaptive_avg_pool2d(self.d(r1), 1)
        return self.fc(torch.relu(self.b(torch.relu(self.a(r1))) + g).flatten(1))


def _convert(net, shape, **options):
    torch.manual_seed(0)
    net = net()
    x = np.random.default_rng(0).uniform(0, 1, (40, *shape)).astype(np.float32)
    return onnx2snn.convert(export_torch(net, torch.tensor(x[:1])), x[:20], "max", timesteps=8, **options), x[20:]


@pytest.mark.parametrize("batch", [1, 4, 64])
def test_a_prefix_current_that_a_stage_also_reads(batch):
    snn, x = _convert(PreActivation, (1, 6, 6))
    _same(snn, x, 12, batch_size=batch)


@pytest.mark.parametrize("batch", [4, 64])
def test_an_add_that_broadcasts_across_stages_stays_plain(batch):
    snn, x = _convert(LateBroadcast, (3, 8, 8))
    _same(snn, x, 10, batch_size=batch)


@pytest.mark.parametrize("batch", [4, 64])
def test_poisson_spikes_straight_into_a_blocked_layer(batch):
    if blocked.block_size() is None:
        pytest.skip("this onnxruntime has no blocked layout")
    torch.manual_seed(0)
    net = nn.Sequential(nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 36, 4))
    x = np.random.default_rng(0).uniform(0, 1, (40, 16, 6, 6)).astype(np.float32)
    snn = onnx2snn.convert(export_torch(net, torch.tensor(x[:1])), x[:20], "max", encoding="poisson")
    session = _same(snn, x[20:], 12, batch_size=batch, seed=1)
    assert session.layout == "blocked" and session._compiled.neurons[0].channels == 16  # the input's layer


def test_two_runs_of_one_session_read_in_turn():
    snn, x = _convert(PreActivation, (1, 6, 6))
    session = onnx2snn.SNNSession(snn, form="step", batch_size=4)
    a, b = session.iter_steps(x[:4], 6), session.iter_steps(x[4:8], 6)
    both = [(next(a)[3], next(b)[3]) for _ in range(6)]  # (start, n, t, values)
    plain = onnx2snn.SNNSession(snn, form="step", neurons="onnx", batch_size=4)
    for (first, second), p, q in zip(both, plain.iter_steps(x[:4], 6), plain.iter_steps(x[4:8], 6)):
        for name in first:
            np.testing.assert_array_equal(first[name], p[3][name])
            np.testing.assert_array_equal(second[name], q[3][name])


def test_the_memory_budget_bounds_the_steps_a_call():
    snn, x = _convert(PreActivation, (1, 6, 6))
    compiled = onnx2snn.SNNSession(snn, form="step", batch_size=2)._compiled
    per_step = 4 * 2 * sum(int(np.prod(shape)) for shape in compiled.shapes.values())
    assert compiled.chunk(2, 32) == 16 and compiled.chunk(2, 32, 3 * per_step) == 3
    _same(snn, x[:6], 9, batch_size=2, max_memory=3 * per_step)
