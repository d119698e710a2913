"""Firing rates and synaptic operations, checked against a simulation by hand."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

import onnx2snn
from onnx2snn.neuron import if_step, initial_membrane
from tests.helpers import mlp


def test_rates_and_operations_match_a_hand_simulation():
    model = mlp(hidden=16)
    x = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, x, "max", per_channel=False, corrections=())
    steps = 20
    report = onnx2snn.activity(snn, x, steps, batch_size=7)  # several batches, a short last one

    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    theta = snn.thresholds["act1"]
    current = x @ w["w1"].T + w["b1"]
    v = initial_membrane(current.shape, theta, snn.metadata["v_init"])
    spikes = 0
    ever = np.zeros(current.shape, bool)
    for _ in range(steps):
        s, v = if_step(current, v, theta)
        spikes += np.count_nonzero(s)
        ever |= s > 0
    (layer,) = report["layers"]
    assert layer["neurons"] == 16
    assert layer["rate"] == pytest.approx(spikes / (30 * 16 * steps))
    assert layer["silent"] == pytest.approx(1 - ever.mean())
    assert 0 < layer["rate"] < 1

    fc1, fc2 = report["synapses"]
    assert fc1["once"] and fc1["macs"] == fc1["sops"] == 8 * 16  # analog input: its MACs, once
    assert not fc2["once"] and fc2["macs"] == 16 * 4
    assert fc2["sops"] == pytest.approx(spikes * 4 / 30)  # each spike reaches 4 synapses
    assert report["ann_macs"] == 8 * 16 + 16 * 4
    assert report["ops_ratio"] == pytest.approx((fc1["sops"] + fc2["sops"]) / report["ann_macs"])
    assert "act1" in onnx2snn.format_activity(report)


def test_silent_network_and_conv_counts(digits_cnn, digits):
    x = digits[0][:20]
    snn = onnx2snn.convert(digits_cnn, x)
    report = onnx2snn.activity(snn, x, 4)
    convs = [s for s in report["synapses"] if s["op"] == "Conv"]
    assert convs[0]["once"] and not any(s["once"] for s in convs[1:])
    # MACs from the shapes: a Conv's outputs x its kernel x its input channels
    w = {t.name: numpy_helper.to_array(t) for t in snn.proto.graph.initializer}
    conv = next(n for n in snn.proto.graph.node if n.op_type == "Conv")
    out_channels, per_output = w[conv.input[1]].shape[0], int(np.prod(w[conv.input[1]].shape[1:]))
    assert convs[0]["macs"] % (out_channels * per_output) == 0
    # blank inputs drive fewer spikes, hence fewer operations downstream
    quiet = onnx2snn.activity(snn, np.zeros_like(x), 4)
    assert quiet["snn_ops"] < report["snn_ops"]


def test_padding_of_a_fixed_batch_is_not_counted():
    x = np.random.default_rng(5).normal(size=(10, 8)).astype(np.float32)
    free = mlp()
    fixed = mlp()
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4  # 10 samples: 3 batches, 2 rows padded
    fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    options = {"method": "max", "per_channel": False, "corrections": ()}
    a = onnx2snn.activity(onnx2snn.convert(free, x, **options), x, 12)
    b = onnx2snn.activity(onnx2snn.convert(fixed, x, **options), x, 12)
    assert b["samples"] == 10
    assert b["layers"][0]["rate"] == pytest.approx(a["layers"][0]["rate"])
    assert b["layers"][0]["silent"] == pytest.approx(a["layers"][0]["silent"])
    assert b["snn_ops"] == pytest.approx(a["snn_ops"])


@pytest.mark.parametrize("encoding", [None, "poisson"])
def test_poisson_input_makes_the_first_layer_synaptic(encoding):
    """Spike trains as input: the first layer accumulates input spikes at every step instead
    of its MACs once (whether the artifact or the caller asks for Poisson encoding)."""
    x = np.random.default_rng(2).uniform(0, 1, size=(12, 8)).astype(np.float32)
    snn = onnx2snn.convert(mlp(), x, encoding="poisson" if encoding is None else "direct")
    fc1 = onnx2snn.activity(snn, x, 10, encoding=encoding)["synapses"][0]
    assert not fc1["once"]
    assert 0 < fc1["sops"] < 10 * fc1["macs"]
