"""The IF op run by onnxruntime equals the numpy reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from onnx2snn.neuron import DOMAIN, if_function, if_node, if_step, initial_membrane
from tests.helpers import const, run_onnx, tensor


def _if_model(shape, threshold, reset, body):
    node = if_node("if0", ["x", "membrane", "theta"], ["spikes", "membrane_next"], reset=reset)
    graph = helper.make_graph(
        [node],
        "if",
        [tensor("x", shape), tensor("membrane", shape)],
        [tensor("spikes", shape), tensor("membrane_next", shape)],
        initializer=[const("theta", threshold)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
        functions=[if_function(17, body)],
        ir_version=10,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    per_channel=st.booleans(),
    reset=st.sampled_from(["subtract", "zero"]),
    specialized=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 40),
)
def test_if_op_equals_reference(shape, per_channel, reset, specialized, seed, steps):
    rng = np.random.default_rng(seed)
    if per_channel and len(shape) >= 2:
        threshold = rng.uniform(0.05, 3.0, (shape[1],) + (1,) * (len(shape) - 2)).astype(np.float32)
    else:
        threshold = np.float32(rng.uniform(0.05, 3.0))
    model = _if_model(shape, threshold, reset, reset if specialized else None)
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = got = initial_membrane(tuple(shape), threshold, 0.5)
    for _ in range(steps):
        x = rng.normal(0.3, 1.0, shape).astype(np.float32)
        spikes, got = session.run(None, {"x": x, "membrane": got})
        ref_spikes, ref = if_step(x, ref, threshold, reset)
        np.testing.assert_array_equal(spikes, ref_spikes)
        np.testing.assert_array_equal(got, ref)


def test_reference_rate_approaches_clipped_input():
    """Constant input x, threshold theta: the mean spike output tends to clip(x, 0, theta)."""
    x = np.linspace(-1, 3, 41, dtype=np.float32)
    theta = np.float32(2.0)
    v = initial_membrane(x.shape, theta, 0.5)
    total = np.zeros_like(x)
    steps = 1000
    for _ in range(steps):
        s, v = if_step(x, v, theta)
        total += s
    np.testing.assert_allclose(total / steps, np.clip(x, 0, theta), atol=float(theta) / steps + 1e-6)


def test_reset_to_zero_forgets_residue():
    s, v = if_step(np.array([1.5], np.float32), np.array([0.0], np.float32), 1.0, reset="zero")
    assert s[0] == 1.0 and v[0] == 0.0
    s, v = if_step(np.array([1.5], np.float32), np.array([0.0], np.float32), 1.0, reset="subtract")
    assert s[0] == 1.0 and v[0] == pytest.approx(0.5)


def test_initial_membrane_is_fraction_of_threshold():
    theta = np.array([1.0, 2.0], np.float32).reshape(2, 1)
    v = initial_membrane((3, 2, 4), theta, 0.25)
    assert v.shape == (3, 2, 4)
    np.testing.assert_array_equal(v[:, 1], 0.5)
    np.testing.assert_array_equal(initial_membrane((2,), 1.0, 0.0), 0.0)


def test_bare_onnxruntime_runs_function_with_default_attributes():
    model = _if_model([2, 3], np.float32(1.0), "subtract", None)
    spikes, v = run_onnx(model, {"x": np.full((2, 3), 1.2, np.float32), "membrane": np.zeros((2, 3), np.float32)})
    np.testing.assert_array_equal(spikes, 1.0)
    np.testing.assert_allclose(v, 0.2, atol=1e-6)
