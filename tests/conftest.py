from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import export_torch


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits as (x [N,1,8,8] in [0,1], y): 1,400 to train and calibrate, 397 held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="session")
def digits_cnn(digits):
    """A small CNN with biases, BatchNorm, AveragePool, Dropout and a Gemm head, trained briefly
    on digits and exported from PyTorch (BatchNormalization kept in the graph)."""
    import torch
    from torch import nn

    x, y, _, _ = digits
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(15):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    return export_torch(net, xt[:1])
