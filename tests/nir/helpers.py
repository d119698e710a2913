"""A small network with every edge the NIR export handles: a residual block with an identity
shortcut, one with a Conv shortcut, a channel concat, a scale, average pools, flatten, dense."""

from __future__ import annotations

import numpy as np
import pytest

import onnx2snn
from tests.helpers import export_torch


def small_net():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(1, 4, 3, padding=1)
            self.b1a, self.b1b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.b2a, self.b2b = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 3, padding=1)
            self.shortcut = nn.Conv2d(4, 6, 1, stride=2)
            self.side = nn.Conv2d(6, 2, 1)
            self.fc1, self.fc2 = nn.Linear(32, 10), nn.Linear(10, 3)

        def forward(self, x):
            r = torch.relu
            h = r(self.c0(x))
            h = r(self.b1b(r(self.b1a(h))) + h)
            h = r(self.b2b(r(self.b2a(h))) + self.shortcut(h))
            h = torch.cat([h, r(self.side(h))], dim=1) * 0.5
            h = torch.flatten(nn.functional.avg_pool2d(h, 2), 1)
            return self.fc2(r(self.fc1(h)))

    torch.manual_seed(0)
    net = Net().eval()
    return export_torch(net, torch.zeros(1, 1, 8, 8))


def inputs(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)


def nir_ready(**options) -> onnx2snn.SNNModel:
    """The small net converted as NIR can say it: membranes from 0, no corrections."""
    settings = {"method": "max", "corrections": (), "v_init": 0.0, **options}
    return onnx2snn.convert(small_net(), inputs(64, 1), **settings)
