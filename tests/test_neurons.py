"""The multi-spike IF and the leaky neurons run by onnxruntime equal their numpy references."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx import helper

from onnx2snn.neuron import DOMAIN
from onnx2snn.neurons import (
    CUBA_LIF,
    LIF,
    MULTI_SPIKE_IF,
    SIGNATURES,
    cuba_lif_step,
    function,
    lif_step,
    multi_spike_if_step,
    node,
)
from tests.helpers import const, tensor


def _session(op_type, shape, params, **attributes):
    """One node of ``op_type``: data inputs x and the states, parameters as initializers."""
    inputs, outputs = SIGNATURES[op_type]
    states = [i for i in inputs if i in ("x", "membrane", "current")]
    graph = helper.make_graph(
        [node(op_type, "n0", inputs, outputs, **attributes)],
        "neuron",
        [tensor(i, shape) for i in states],
        [tensor(o, shape) for o in outputs],
        initializer=[const(k, v) for k, v in params.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
        functions=[function(op_type, 17)],
        ir_version=10,
    )
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _params(rng, shape, names, low, high):
    return {k: rng.uniform(low, high, shape).astype(np.float32) for k in names}


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**31 - 1))
def test_multi_spike_if_equals_reference(shape, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.1, 2.0, shape).astype(np.float32)
    session = _session(MULTI_SPIKE_IF, shape, {"threshold": theta})
    got = ref = np.zeros(shape, np.float32)
    for _ in range(20):
        x = rng.normal(0.5, 2.0, shape).astype(np.float32)
        spikes, got = session.run(None, {"x": x, "membrane": got})
        ref_spikes, ref = multi_spike_if_step(x, ref, theta)
        np.testing.assert_array_equal(spikes, ref_spikes)
        np.testing.assert_array_equal(got, ref)


def test_multi_spike_if_passes_currents_above_threshold():
    """A current of 2.5 theta gives two spikes and keeps 0.5 theta, where IF would give one."""
    spikes, v = multi_spike_if_step(np.float32(2.5), np.float32(0), np.float32(1.0))
    assert spikes == 2.0 and v == 0.5


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
    leak=st.sampled_from([0, 1]),
    multi_spike=st.sampled_from([0, 1]),
    reset_to_zero=st.sampled_from([0, 1]),
    dt=st.sampled_from([1.0, 1e-3, 0.25]),
    at=st.sampled_from([0, 1]),
)
def test_lif_equals_reference(shape, seed, leak, multi_spike, reset_to_zero, dt, at):
    rng = np.random.default_rng(seed)
    params = _params(rng, shape, ["threshold", "r"], 0.2, 2.0)
    params["tau"] = rng.uniform(dt * 1.5, dt * 20, shape).astype(np.float32)
    params["v_leak"] = rng.uniform(-0.2, 0.2, shape).astype(np.float32)
    attrs = {"dt": dt, "leak": leak, "multi_spike": multi_spike, "reset_to_zero": reset_to_zero}
    attrs["fire_at_threshold"] = at
    session = _session(LIF, shape, params, **attrs)
    got = ref = np.zeros(shape, np.float32)
    total = 0.0
    for _ in range(20):
        # about three thresholds of drive: the neurons fire (and with multi_spike, several times)
        drive = 3 * params["threshold"] / params["r"] / (1 if leak else dt)
        x = (rng.normal(1.0, 1.0, shape) * drive).astype(np.float32)
        spikes, got = session.run(None, {"x": x, "membrane": got})
        ref_spikes, ref = lif_step(x, ref, **params, **attrs)
        np.testing.assert_array_equal(spikes, ref_spikes)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
        total += spikes.sum()
    assert total > 0  # the test drives the neurons above threshold


def test_lif_reference_follows_the_differential_equation():
    """Constant drive r x below v_leak's pull: the membrane relaxes to v_leak + r x, as
    tau dv/dt = (v_leak - v) + r x says, and never fires under a higher threshold."""
    v = np.zeros(3, np.float32)
    for _ in range(2000):
        s, v = lif_step(np.float32(0.5), v, threshold=10.0, tau=20.0, r=2.0, v_leak=0.1, dt=0.5)
        assert not s.any()
    np.testing.assert_allclose(v, 0.1 + 2.0 * 0.5, rtol=1e-4)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
    multi_spike=st.sampled_from([0, 1]),
    reset_to_zero=st.sampled_from([0, 1]),
)
@example(shape=[3, 3, 4], seed=12569, multi_spike=1, reset_to_zero=0)  # 1.2e-6 apart after a reset, in CI
def test_cuba_lif_equals_reference(shape, seed, multi_spike, reset_to_zero):
    rng = np.random.default_rng(seed)
    params = _params(rng, shape, ["threshold", "r", "w_in"], 0.2, 2.0)
    params.update(_params(rng, shape, ["tau_syn", "tau_mem"], 2.0, 10.0))
    params["v_leak"] = np.zeros(shape, np.float32)
    attrs = {"dt": 1.0, "multi_spike": multi_spike, "reset_to_zero": reset_to_zero}
    session = _session(CUBA_LIF, shape, params, **attrs)
    v = i = rv = ri = np.zeros(shape, np.float32)
    for _ in range(25):
        x = rng.normal(2.0, 2.0, shape).astype(np.float32)
        spikes, v, i = session.run(None, {"x": x, "membrane": v, "current": i})
        ref_spikes, rv, ri = cuba_lif_step(x, rv, ri, **params, **attrs)
        np.testing.assert_array_equal(spikes, ref_spikes)
        # a reset subtracts a threshold from a membrane of its size: the difference keeps the
        # rounding of the larger values (currents reach 10-20), a few ulps of them absolute
        np.testing.assert_allclose(v, rv, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(i, ri, rtol=1e-6, atol=1e-5)


def test_firing_rule_at_the_threshold():
    """NIR fires above the threshold; fire_at_threshold=1 also at it (as IF and sinabs do)."""
    args = dict(threshold=1.0, tau=1.0, r=1.0, v_leak=0.0, leak=0)
    assert lif_step(np.float32(1), np.float32(0), **args)[0] == 0
    assert lif_step(np.float32(1), np.float32(0), fire_at_threshold=1, **args)[0] == 1


def test_unknown_attribute_is_refused():
    with pytest.raises(ValueError, match="no attribute leak"):
        node(CUBA_LIF, "n", ["x"], ["y"], leak=0)


def test_multi_spike_conversion_equals_its_reference():
    """convert(spike_mode="multi") puts MultiSpikeIF neurons in; the artifact's output, in both
    execution forms, is the numpy reference network's: fc1, MultiSpikeIF, fc2, mean over steps."""
    import onnx2snn
    from tests.helpers import mlp

    ann = mlp(hidden=12)
    x = np.random.default_rng(3).normal(0, 1, (20, 8)).astype(np.float32)
    snn = onnx2snn.convert(ann, x, method="percentile:90", corrections=(), spike_mode="multi", v_init=0.25)
    assert {n.op_type for n in snn.proto.graph.node if n.domain == DOMAIN} == {MULTI_SPIKE_IF}
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in ann.graph.initializer}
    theta = snn.thresholds[snn.layers[0]["node"]]
    v, total, T = np.broadcast_to(0.25 * theta, (20, 12)).astype(np.float32), 0.0, 10
    current = x @ weights["w1"].T + weights["b1"]
    for _ in range(T):
        s, v = multi_spike_if_step(current, v, theta)
        total = total + s @ weights["w2"].T + weights["b2"]
    for form in ("step", "unrolled"):
        np.testing.assert_allclose(onnx2snn.SNNSession(snn, form=form).run(x, T), total / T, rtol=1e-5, atol=1e-5)


def test_multi_spike_mode_needs_reset_by_subtraction():
    import onnx2snn

    with pytest.raises(onnx2snn.ConfigError, match="resets by subtraction only"):
        onnx2snn.ConvertOptions.make(spike_mode="multi", reset="zero")


def _multi_spike_snn():
    import onnx2snn
    from tests.helpers import mlp

    x = np.random.default_rng(3).normal(0, 1, (20, 8)).astype(np.float32)
    return onnx2snn.convert(mlp(hidden=12), x, method="percentile:90", corrections=(), spike_mode="multi"), x


def test_multi_spike_layers_step_aside_from_the_compiled_kernel():
    """The compiled kernel computes IF only: a session on MultiSpikeIF layers runs their ONNX
    operators (auto), and refuses compiled ones by name rather than computing IF."""
    import onnx2snn
    from onnx2snn.runtime import kernel

    snn, x = _multi_spike_snn()
    session = onnx2snn.SNNSession(snn, form="step")
    assert session.neurons == "onnx"
    expected = onnx2snn.SNNSession(snn, form="step", neurons="onnx").run(x, 10, per_step=True)
    np.testing.assert_array_equal(session.run(x, 10, per_step=True), expected)
    if kernel.available():
        with pytest.raises(onnx2snn.ConfigError, match="layer '.*' is a MultiSpikeIF node, not an IF node"):
            onnx2snn.SNNSession(snn, form="step", neurons="compiled")


def test_multi_spike_artifact_in_line_and_inlined_equals_the_step_form():
    """unroll(scan=False) writes MultiSpikeIF's steps as plain nodes and export --inline its body
    in standard operators: both compute what the step form does."""
    import onnx2snn
    from tests.helpers import run_onnx

    snn, x = _multi_spike_snn()
    expected = onnx2snn.SNNSession(snn, form="step").run(x, 6, per_step=True)
    unrolled = onnx2snn.unroll(snn, 6, check=True, scan=False)
    assert not any(n.op_type == "Scan" for n in unrolled.graph.node)
    per_step = dict(zip([o.name for o in unrolled.graph.output], run_onnx(unrolled, {snn.input_name: x})))
    np.testing.assert_allclose(per_step[snn.outputs[0] + ".per_step"], expected, rtol=1e-6, atol=1e-6)
    inlined = onnx2snn.inline(snn)
    assert not inlined.proto.functions and not any(n.domain == DOMAIN for n in inlined.proto.graph.node)
    np.testing.assert_array_equal(onnx2snn.SNNSession(inlined, form="step").run(x, 6, per_step=True), expected)
