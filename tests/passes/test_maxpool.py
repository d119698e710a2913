"""Spiking max-pooling: the decoded rate is the max of the input rates, exactly."""

from __future__ import annotations

import numpy as np
from onnx import helper

import onnx2snn
from onnx2snn.neuron import if_step, initial_membrane
from tests.helpers import const, make_model, run_onnx, tensor


def pool_net():
    """x[N,2,4,4] -> Relu -> MaxPool 2x2 -> Flatten -> Gemm(identity 8x8)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "eye"], ["y"], name="head"),
    ]
    return make_model(nodes, [tensor("x", ["N", 2, 4, 4])], [tensor("y", ["N", 8])], [const("eye", np.eye(8))])


def test_pooled_rate_is_max_of_input_rates():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.0, (5, 2, 4, 4)).astype(np.float32)
    snn = onnx2snn.convert(pool_net(), x, "max", per_channel=False, corrections=())
    assert [p["node"] for p in snn.metadata["pools"]] == ["pool"]
    theta = snn.thresholds["relu"]
    per_step = onnx2snn.SNNSession(snn).run(x, 20, per_step=True)
    v = initial_membrane(x.shape, theta)
    total = np.zeros_like(x)
    for t in range(20):
        s, v = if_step(x, v, theta)
        total += s
        rates = (total / (t + 1)).reshape(5, 2, 2, 2, 2, 2).max(axis=(3, 5)).reshape(5, 8)
        np.testing.assert_allclose(per_step[t], rates, atol=1e-5)


def test_a_naive_step_maxpool_would_overshoot():
    """Two inputs firing at rate 1/2 on alternate steps: the max of rates is 1/2 (what we give),
    a MaxPool of single steps would give 1."""
    x = np.zeros((1, 2, 4, 4), np.float32)
    x[0, 0, 0, 0] = 0.5
    x[0, 0, 0, 1] = 0.5
    snn = onnx2snn.convert(pool_net(), np.ones((2, 2, 4, 4), np.float32))  # threshold 1
    out = onnx2snn.SNNSession(snn).run(x, 100)
    assert abs(out[0, 0] - 0.5) <= 0.01


def test_cnn_with_maxpool_converges_and_to_ann_restores_it(digits):
    import torch
    from torch import nn

    from tests.helpers import export_torch

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    model = export_torch(net, torch.tensor(digits[0][:1]), fold=True)
    snn = onnx2snn.convert(model, digits[0][:300])
    assert len(snn.metadata["pools"]) == 2
    x = digits[2][:200]
    ann = run_onnx(model, {"input": x})[0]
    out = onnx2snn.SNNSession(snn).run(x, 512)
    assert (out.argmax(1) == ann.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(run_onnx(onnx2snn.to_ann(snn), {"input": x})[0], ann, atol=1e-4)


def test_maxpool_on_the_input_stays_plain():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["p"], ["a"], name="relu"),
        helper.make_node("Flatten", ["a"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "eye"], ["y"], name="head"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2, 4, 4])], [tensor("y", ["N", 8])], [const("eye", np.eye(8))])
    snn = onnx2snn.convert(model, np.ones((2, 2, 4, 4), np.float32))
    assert snn.metadata["pools"] == []
    poisson = onnx2snn.convert(model, np.ones((2, 2, 4, 4), np.float32), encoding="poisson")
    assert [p["node"] for p in poisson.metadata["pools"]] == ["pool"]  # spikes reach it there
