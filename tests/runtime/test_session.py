"""SNNSession drives the artifact exactly as the numpy reference neuron would, and its
outputs converge to the ANN's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import onnx2snn
from onnx2snn.neuron import if_step, initial_membrane
from onnx2snn.runtime.forms import drop_outputs, split_time_invariant
from tests.helpers import const, make_model, mlp, run_onnx, tensor


def reference_mlp_snn(model: onnx.ModelProto, snn: onnx2snn.SNNModel, x: np.ndarray, steps: int) -> np.ndarray:
    """The mlp() network simulated by hand with the numpy IF reference."""
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    theta = snn.thresholds["act1"]
    current = x @ w["w1"].T + w["b1"]  # time-invariant: direct encoding
    v = initial_membrane(current.shape, theta, snn.metadata["v_init"])
    total = np.zeros((len(x), 4))
    for _ in range(steps):
        s, v = if_step(current, v, theta, snn.metadata["reset"])
        total += s @ w["w2"].T + w["b2"]
    return total / steps


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_session_matches_numpy_reference(reset):
    model = mlp()
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, x, "max", reset=reset, per_channel=False, corrections=())
    got = onnx2snn.SNNSession(snn, batch_size=16).run(x, 25)
    np.testing.assert_allclose(got, reference_mlp_snn(model, snn, x, 25), rtol=1e-5, atol=1e-5)


def test_per_step_output_is_cumulative_mean():
    model = mlp()
    x = np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, x, "max", per_channel=False, corrections=())
    session = onnx2snn.SNNSession(snn)
    per_step = session.run(x, 12, per_step=True)
    assert per_step.shape == (12, 10, 4)
    for t in (1, 5, 12):
        np.testing.assert_allclose(per_step[t - 1], reference_mlp_snn(model, snn, x, t), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(per_step[-1], session.run(x, 12))


def test_convergence_of_trained_cnn(digits_cnn, digits):
    """Biases, BatchNorm, AveragePool and a Gemm head, exported from PyTorch: agreement with the
    ANN >= 99% at T=512 on held-out data, and the output error falls as T grows."""
    x_cal, _, x_test, y_test = digits
    snn = onnx2snn.convert(digits_cnn, x_cal, method="max")
    ann = run_onnx(digits_cnn, {"input": x_test})[0]
    per_step = onnx2snn.SNNSession(snn).run(x_test, 512, per_step=True)
    errors = {t: float(np.abs(per_step[t - 1] - ann).mean()) for t in (32, 128, 512)}
    agreement = float((per_step[511].argmax(1) == ann.argmax(1)).mean())
    assert agreement >= 0.99, agreement
    assert errors[32] > errors[128] > errors[512], errors
    assert (ann.argmax(1) == y_test).mean() > 0.85  # the ANN really learned something


def test_bare_onnxruntime_runs_one_step(digits_cnn, digits, tmp_path):
    x_cal, _, x_test, _ = digits
    path = onnx2snn.convert(digits_cnn, x_cal).save(tmp_path / "snn.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # nothing registered
    feeds = {}
    for inp in session.get_inputs():
        shape = [4 if not isinstance(d, int) else d for d in inp.shape]
        feeds[inp.name] = x_test[:4] if inp.name == "input" else np.zeros(shape, np.float32)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    assert outputs["logits"].shape == (4, 10)
    assert any(name.endswith(".membrane_next") for name in outputs)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_time_invariant_prefix_runs_once(digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0])
    starts = {layer["membrane_init"] for layer in snn.layers}  # constants: a session reads them once
    split = split_time_invariant(
        drop_outputs(snn.proto, starts), [layer["membrane"] for layer in snn.layers], snn.outputs
    )
    assert split.prefix is not None
    step_ops = [n.op_type for n in split.step.graph.node]
    # the first conv feeds the first neuron from the input alone: it lives in the prefix
    assert step_ops.count("Conv") == 1 and step_ops[0] == "IF"
    assert [n.op_type for n in split.prefix.graph.node] == ["Conv"]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_runs_repeat_exactly(digits_cnn, digits, batch_size):
    """A run leaves nothing behind: with batch 1 the initial membranes (per neuron, from
    potential correction) once aliased the state buffers and the run overwrote them."""
    snn = onnx2snn.convert(digits_cnn, digits[0], corrections=("potential",))
    assert all(layer.get("membrane_init") for layer in snn.layers)
    session = onnx2snn.SNNSession(snn, providers="cpu", batch_size=batch_size, form="step")
    x = digits[2][:3]
    first = session.run(x, 8)
    np.testing.assert_array_equal(session.run(x, 8), first)
    np.testing.assert_allclose(onnx2snn.SNNSession(snn, form="unrolled").run(x, 8), first, atol=1e-5)


def test_trailing_softmax_is_applied_after_the_mean():
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("Gemm", ["a", "w2"], ["z"], name="fc2", transB=1),
        helper.make_node("Softmax", ["z"], ["p"], name="softmax", axis=1),
    ]
    model = make_model(
        nodes,
        [tensor("x", ["N", 8])],
        [tensor("p", ["N", 3])],
        [const("w1", rng.normal(size=(6, 8))), const("w2", rng.normal(size=(3, 6)))],
    )
    x = rng.normal(size=(20, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, x)
    assert snn.metadata["output_activations"] == {"p": {"op": "Softmax", "axis": 1}}
    out = onnx2snn.SNNSession(snn).run(x, 2000)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out, run_onnx(model, {"x": x})[0], atol=0.02)


def test_static_batch_model_is_padded(digits):
    model = mlp()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    x = np.random.default_rng(5).normal(size=(10, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, x)
    out = onnx2snn.SNNSession(snn).run(x, 20)
    assert out.shape == (10, 4)
    np.testing.assert_allclose(out[8:], onnx2snn.SNNSession(snn).run(np.concatenate([x[8:], x[:2]]), 20)[:2], atol=1e-6)


def test_to_ann_restores_the_ann(digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0])
    x = digits[2][:30]
    np.testing.assert_allclose(
        run_onnx(onnx2snn.to_ann(snn), {"input": x})[0], run_onnx(digits_cnn, {"input": x})[0], atol=1e-4
    )


def test_bad_timesteps_and_shapes(digits_cnn, digits):
    session = onnx2snn.SNNSession(onnx2snn.convert(digits_cnn, digits[0]))
    for bad in (0, -3):
        with pytest.raises(onnx2snn.ConfigError, match="timesteps"):
            session.run(digits[2], bad)
    with pytest.raises(onnx2snn.DataError, match="does not match model input 'input'"):
        session.run(np.zeros((2, 1, 9, 9), np.float32), 4)


def test_provider_is_reported():
    session = onnx2snn.SNNSession(onnx2snn.convert(mlp(), np.ones((4, 8), np.float32)), providers="cpu")
    assert session.provider == "CPUExecutionProvider"
    with pytest.raises(onnx2snn.ConfigError, match="unknown execution provider"):
        onnx2snn.SNNSession(onnx2snn.convert(mlp(), np.ones((4, 8), np.float32)), providers="tpu")


def test_threads_spin_only_for_small_batches(digits_cnn, digits):
    from onnx2snn.runtime.providers import SPIN_MAX_BATCH, session_options

    def spins(options: ort.SessionOptions) -> str:
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    assert spins(session_options(1)) == "1"
    assert spins(session_options(SPIN_MAX_BATCH + 1)) == "0"
    assert spins(session_options(64, spin=True)) == "1"
    # either setting computes the same numbers
    x = digits[2][:8]
    snn = onnx2snn.convert(digits_cnn, digits[0][:64])
    np.testing.assert_array_equal(
        onnx2snn.SNNSession(snn, spin=True).run(x, 6), onnx2snn.SNNSession(snn, spin=False).run(x, 6)
    )
