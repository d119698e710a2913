"""Spike-Norm, MMSE and the layer-wise corrections: each equals its definition, each converges,
and calibration is deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnx2snn
from onnx2snn.graph import import_graph
from onnx2snn.neuron import Neurons, if_step, initial_membrane
from tests.helpers import const, make_model, mlp, run_onnx, tensor


def two_layer_net():
    """x[N,3] -> fc1 -> relu1 -> fc2 -> relu2 -> head[N,2], positive weights so neurons fire."""
    w1 = np.array([[1.0, 0.5, 0.0], [0.2, 1.0, 0.3], [0.0, 0.4, 1.2], [0.7, 0.1, 0.5]])
    w2 = np.array([[0.6, 0.2, 0.9, 0.1], [0.3, 0.8, 0.1, 0.5]])
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "w3"], ["y"], name="head", transB=1),
    ]
    inits = [const("w1", w1), const("w2", w2), const("w3", np.eye(2))]
    return make_model(nodes, [tensor("x", ["N", 3])], [tensor("y", ["N", 2])], inits), w1, w2


def test_spike_norm_equals_hand_computation():
    model, w1, w2 = two_layer_net()
    x = np.random.default_rng(0).uniform(0, 1, (20, 3)).astype(np.float32)
    T = 10
    snn = onnx2snn.convert(model, x, "spike-norm", timesteps=T, per_channel=False, corrections=())
    # layer 1: its input current is x @ w1.T at every step (direct encoding)
    current1 = x @ w1.T.astype(np.float32)
    theta1 = current1.max()
    # layer 2: simulate layer 1 with theta1 and take the max of its output current over steps
    v = initial_membrane(current1.shape, theta1, 0.5)
    peak = -np.inf
    for _ in range(T):
        s, v = if_step(current1, v, theta1)
        peak = max(peak, float((s @ w2.T.astype(np.float32)).max()))
    assert float(snn.thresholds["relu1"]) == pytest.approx(theta1, rel=1e-6)
    assert float(snn.thresholds["relu2"]) == pytest.approx(peak, rel=1e-6)


def test_spike_norm_seed_variant_is_mean_of_percentiles():
    model, w1, _ = two_layer_net()
    x = np.random.default_rng(1).uniform(0, 1, (30, 3)).astype(np.float32)
    snn = onnx2snn.convert(model, x, "spike-norm:seed", timesteps=5)
    current1 = x @ w1.T.astype(np.float32)
    expected = np.percentile(current1, 99, axis=1).mean()  # the same every step under direct encoding
    assert float(snn.thresholds["relu1"]) == pytest.approx(expected, rel=1e-5)


def test_spike_norm_seed_variant_is_per_layer(digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0][:100], "spike-norm:seed", per_channel=True, timesteps=4)
    assert all(theta.size == 1 for theta in snn.thresholds.values())
    assert snn.metadata["calibration"]["per_channel"] is False  # the artifact says what was done


def test_mmse_minimizes_quantization_error():
    model, w1, _ = two_layer_net()
    x = np.random.default_rng(2).uniform(0, 1, (400, 3)).astype(np.float32)
    T = 4
    theta = float(
        onnx2snn.convert(model, x, "mmse", timesteps=T, per_channel=False, corrections=()).thresholds["relu1"]
    )
    a = np.maximum(x @ w1.T, 0)

    def error(th):
        q = th / T * np.clip(np.floor(a * T / th + 0.5), 0, T)
        return ((a - q) ** 2).sum()

    candidates = a.max() * (1 - 0.01 * np.arange(100))
    best = candidates[np.argmin([error(c) for c in candidates])]
    assert theta < a.max()  # at T=4 clipping the tail pays
    assert error(theta) <= error(best) * 1.02


@pytest.mark.parametrize(
    "method, corrections, per_channel",
    [
        ("max", (), True),
        ("percentile:99.9", ("bias",), False),
        ("mmse", ("potential",), True),
        ("spike-norm", (), False),
        ("spike-norm:seed", (), False),
        ("mmse", ("bias", "potential"), True),
    ],
)
def test_every_method_converges(digits_cnn, digits, method, corrections, per_channel):
    x_cal, _, x_test, _ = digits
    snn = onnx2snn.convert(
        digits_cnn, x_cal[:300], method, corrections=corrections, per_channel=per_channel, timesteps=16
    )
    ann = run_onnx(digits_cnn, {"input": x_test})[0].argmax(1)
    out = onnx2snn.SNNSession(snn).run(x_test, 512)
    assert (out.argmax(1) == ann).mean() >= 0.99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bias_correction_closes_the_mean_gap(seed):
    """The mean gap between ANN activation and SNN rate, per channel, at least 30% smaller with
    the bias correction. On continuous inputs: where many neurons see one identical current (an
    image's blank background), the shift moves them all across a quantization level at once and
    the gap can grow (seen on the digits CNN at T = 8 and 16)."""
    from onnx2snn.calibration import calibrate, correct_layers
    from onnx2snn.calibration.corrections import _snn_mean
    from onnx2snn.calibration.statistics import channel_rows, stream_activations
    from onnx2snn.passes import canonicalize

    graph = canonicalize(import_graph(mlp(hidden=32, seed=seed)))
    x = np.random.default_rng(seed).normal(0, 1, (300, 8)).astype(np.float32)
    neurons = Neurons(timesteps=8)
    thresholds = calibrate(graph, x, "max", True, neurons)
    out = next(n for n in graph.nodes if n.op == "Relu").outputs[0].name
    ann = np.concatenate([channel_rows(a[out], True) for a in stream_activations(graph, [out], x, 64)], axis=1).mean(1)
    fixes = correct_layers(graph, thresholds, x, neurons, ("bias",))
    before = np.abs(ann - _snn_mean(graph, thresholds, neurons, None, out, x, 64)).mean()
    after = np.abs(ann - _snn_mean(graph, thresholds, neurons, fixes, out, x, 64)).mean()
    assert after < 0.7 * before


def test_corrections_survive_save_and_to_ann(digits_cnn, digits, tmp_path):
    x_cal, _, x_test, _ = digits
    snn = onnx2snn.convert(digits_cnn, x_cal[:200], "mmse", corrections=("bias", "potential"), timesteps=8)
    layer = snn.layers[0]
    assert layer["current_shift"] and layer["membrane_init"]
    loaded = onnx2snn.load(snn.save(tmp_path / "snn.onnx"))
    np.testing.assert_array_equal(
        onnx2snn.SNNSession(loaded).run(x_test[:16], 8), onnx2snn.SNNSession(snn).run(x_test[:16], 8)
    )
    # the rebuilt ANN is the original one: corrections belong to the SNN only
    np.testing.assert_allclose(
        run_onnx(onnx2snn.to_ann(snn), {"input": x_test[:16]})[0],
        run_onnx(digits_cnn, {"input": x_test[:16]})[0],
        atol=1e-4,
    )


@pytest.mark.parametrize("method", ["percentile:99", "spike-norm"])
def test_calibration_is_deterministic_for_a_seed(digits_cnn, digits, method):
    x = digits[0]
    a = onnx2snn.convert(digits_cnn, x, method, calibration_samples=100, seed=7, encoding="poisson", timesteps=8)
    b = onnx2snn.convert(digits_cnn, x, method, calibration_samples=100, seed=7, encoding="poisson", timesteps=8)
    c = onnx2snn.convert(digits_cnn, x, method, calibration_samples=100, seed=8, encoding="poisson", timesteps=8)
    for name in a.thresholds:
        np.testing.assert_array_equal(a.thresholds[name], b.thresholds[name])
    assert any(not np.array_equal(a.thresholds[n], c.thresholds[n]) for n in a.thresholds)


def residual_net():
    """x -> fc1 -> r1 -> {fc2 -> r2, concat(r1, r2) -> fc3 -> r3} + r1 -> r4 -> head: a residual
    Add of two spiking branches and a Concat."""
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["r1"], name="r1"),
        helper.make_node("Gemm", ["r1", "w2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["r2"], name="r2"),
        helper.make_node("Concat", ["r1", "r2"], ["c"], name="cat", axis=1),
        helper.make_node("Gemm", ["c", "w3"], ["h3"], name="fc3", transB=1),
        helper.make_node("Relu", ["h3"], ["r3"], name="r3"),
        helper.make_node("Add", ["r3", "r1"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r4"], name="r4"),
        helper.make_node("Gemm", ["r4", "w4"], ["y"], name="head", transB=1),
    ]
    inits = [
        const("w1", rng.normal(0, 0.6, (8, 6))),
        const("w2", rng.normal(0, 0.4, (8, 8))),
        const("w3", rng.normal(0, 0.3, (8, 16))),
        const("w4", rng.normal(0, 0.5, (5, 8))),
    ]
    return make_model(nodes, [tensor("x", ["N", 6])], [tensor("y", ["N", 5])], inits)


@pytest.mark.parametrize("method", ["spike-norm", "mmse"])
def test_branching_graphs_calibrate_and_converge(method):
    model = residual_net()
    x = np.random.default_rng(6).normal(size=(300, 6)).astype(np.float32)
    snn = onnx2snn.convert(model, x, method, timesteps=16)
    assert [layer["node"] for layer in snn.layers] == ["r1", "r2", "r3", "r4"]
    ann = run_onnx(model, {"x": x})[0]
    out = onnx2snn.SNNSession(snn).run(x, 1024)
    assert (out.argmax(1) == ann.argmax(1)).mean() >= 0.99
