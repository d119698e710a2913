"""The public API: from_torch with both exporters, convert of a torch module, save/load."""

from __future__ import annotations

import numpy as np
import pytest

import onnx2snn
from tests.helpers import run_onnx


def small_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )


@pytest.mark.parametrize("dynamo", [False, True])
def test_from_torch_exports_with_dynamic_batch(dynamo, digits):
    import torch

    net = small_net().eval()
    x = digits[2][:5]
    model = onnx2snn.from_torch(net, x[:1], dynamo=dynamo)
    got = run_onnx(model, {model.graph.input[0].name: x})[0]
    np.testing.assert_allclose(got, net(torch.tensor(x)).detach().numpy(), atol=1e-4)
    snn = onnx2snn.convert(model, digits[0][:200])
    assert len(snn.layers) == 1


def test_convert_accepts_a_torch_module(digits):
    snn = onnx2snn.convert(small_net(), digits[0][:200], timesteps=16)
    assert snn.timesteps == 16 and onnx2snn.SNNSession(snn).run(digits[2][:3]).shape == (3, 10)


def test_save_and_load_roundtrip(digits_cnn, digits, tmp_path):
    snn = onnx2snn.convert(digits_cnn, digits[0], method="percentile:99.9", per_channel=True)
    loaded = onnx2snn.load(snn.save(tmp_path / "a" / "snn.onnx"))
    assert loaded.metadata == snn.metadata
    for name, theta in snn.thresholds.items():
        np.testing.assert_array_equal(loaded.thresholds[name], theta)
    np.testing.assert_array_equal(
        onnx2snn.SNNSession(loaded).run(digits[2][:8], 8), onnx2snn.SNNSession(snn).run(digits[2][:8], 8)
    )


def test_load_refuses_plain_onnx_and_garbage(tmp_path, digits_cnn):
    plain = tmp_path / "ann.onnx"
    plain.write_bytes(digits_cnn.SerializeToString())
    with pytest.raises(onnx2snn.ModelError, match="not an onnx2snn artifact"):
        onnx2snn.load(plain)
    junk = tmp_path / "junk.onnx"
    junk.write_text("hello")
    with pytest.raises(onnx2snn.ModelError, match="not an ONNX model"):
        onnx2snn.load(junk)
    with pytest.raises(onnx2snn.ModelError, match="no such file"):
        onnx2snn.load(tmp_path / "missing.onnx")


def test_one_onnxruntime_in_the_environment():
    """onnxruntime and onnxruntime-gpu unpack into one package: with both, the files of whichever
    was installed last win, and tests would run on a runtime users of the other never have."""
    from importlib.metadata import distributions

    names = {(d.metadata["Name"] or "").lower() for d in distributions()}
    assert len(names & {"onnxruntime", "onnxruntime-gpu"}) == 1, names & {"onnxruntime", "onnxruntime-gpu"}
