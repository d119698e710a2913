"""The neurons beside IF: a multi-spike IF for converted networks, and the leaky neurons that
NIR graphs bring (LIF, CubaLIF). Each is an ONNX model-local function in domain ``onnx2snn``
with its numpy reference beside it, like the IF in neuron.py (which stays as it is).

``MultiSpikeIF(x, membrane, threshold) -> (spikes, membrane_next)``, attribute ``v_init``
(as IF's), with ``v = membrane + x``:

    n             = max(floor(v / threshold), 0)       # as many spikes as thresholds crossed
    spikes        = threshold * n                       # amplitude theta, like IF
    membrane_next = v - spikes                          # reset by subtraction

It is IF without the one-spike-a-step limit (sinabs' ``MultiSpike``): a current above the
threshold is passed on in full instead of clipped at theta.

``LIF(x, membrane, threshold, tau, r, v_leak) -> (spikes, membrane_next)``, NIR's leaky
integrate-and-fire neuron ``tau dv/dt = (v_leak - v) + r x``, one forward-Euler step of ``dt``;
with ``leak=0`` NIR's IF ``dv/dt = r x`` (``tau`` unused):

    v = membrane + dt / tau * (v_leak - membrane + r * x)     (leak = 1)
      | membrane + dt * r * x                                  (leak = 0)
    n = [v > threshold]                                        (multi_spike = 0: one spike at most;
                                                                [v >= threshold] with fire_at_threshold = 1)
      | max(floor(v / threshold), 0)                           (multi_spike = 1)
    spikes = n                                                 # unit spikes, as NIR's neurons emit
    membrane_next = v - n * threshold                          (reset_to_zero = 0)
                  | v * [n == 0]                               (reset_to_zero = 1)

``CubaLIF(x, membrane, current, threshold, tau_syn, tau_mem, r, v_leak, w_in)
-> (spikes, membrane_next, current_next)``, NIR's current-based LIF
``tau_syn dI/dt = -I + w_in x``, ``tau_mem dv/dt = (v_leak - v) + r I``, the current first:

    current_next = current + dt / tau_syn * (w_in * x - current)
    v            = membrane + dt / tau_mem * (v_leak - membrane + r * current_next)

then spikes and reset as LIF. Attributes of LIF and CubaLIF: ``dt`` (float), ``multi_spike``,
``reset_to_zero``, ``fire_at_threshold`` (and ``leak`` for LIF), ints 0 or 1.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .neuron import DEFAULT_V_INIT, DOMAIN

MULTI_SPIKE_IF = "MultiSpikeIF"
LIF = "LIF"
CUBA_LIF = "CubaLIF"
OP_TYPES = (MULTI_SPIKE_IF, LIF, CUBA_LIF)

# every input and output of each function, in order (states: membrane, current)
SIGNATURES: dict[str, tuple[list[str], list[str]]] = {
    MULTI_SPIKE_IF: (["x", "membrane", "threshold"], ["spikes", "membrane_next"]),
    LIF: (["x", "membrane", "threshold", "tau", "r", "v_leak"], ["spikes", "membrane_next"]),
    CUBA_LIF: (
        ["x", "membrane", "current", "threshold", "tau_syn", "tau_mem", "r", "v_leak", "w_in"],
        ["spikes", "membrane_next", "current_next"],
    ),
}
DEFAULTS: dict[str, dict[str, int | float]] = {
    MULTI_SPIKE_IF: {"v_init": DEFAULT_V_INIT},
    LIF: {"dt": 1.0, "leak": 1, "multi_spike": 0, "reset_to_zero": 0, "fire_at_threshold": 0},
    CUBA_LIF: {"dt": 1.0, "multi_spike": 0, "reset_to_zero": 0, "fire_at_threshold": 0},
}


# --- numpy references -------------------------------------------------------------------
def multi_spike_if_step(
    x: np.ndarray, membrane: np.ndarray, threshold: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """One MultiSpikeIF step: (spikes of amplitude theta, membrane_next)."""
    theta = np.asarray(threshold, np.float32)
    v = membrane + x
    spikes = np.maximum(np.floor(v / theta), 0).astype(v.dtype) * theta
    return spikes, v - spikes


def _fire_and_reset(
    v: np.ndarray, threshold: np.ndarray, multi_spike: int, reset_to_zero: int, fire_at_threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    if multi_spike:
        n = np.maximum(np.floor(v / threshold), 0).astype(v.dtype)
    else:
        n = ((v >= threshold) if fire_at_threshold else (v > threshold)).astype(v.dtype)
    if reset_to_zero:
        return n, v * (n == 0).astype(v.dtype)
    return n, v - n * threshold


def lif_step(
    x: np.ndarray,
    membrane: np.ndarray,
    threshold: np.ndarray | float,
    tau: np.ndarray | float,
    r: np.ndarray | float,
    v_leak: np.ndarray | float,
    dt: float = 1.0,
    leak: int = 1,
    multi_spike: int = 0,
    reset_to_zero: int = 0,
    fire_at_threshold: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One LIF step (see the module docstring): (unit spikes, membrane_next)."""
    f = np.float32
    theta, tau, r, v_leak = (np.asarray(a, f) for a in (threshold, tau, r, v_leak))
    drive = r * x
    if leak:
        v = membrane + (f(dt) / tau) * ((v_leak - membrane) + drive)
    else:
        v = membrane + f(dt) * drive
    return _fire_and_reset(v.astype(f), theta, multi_spike, reset_to_zero, fire_at_threshold)


def cuba_lif_step(
    x: np.ndarray,
    membrane: np.ndarray,
    current: np.ndarray,
    threshold: np.ndarray | float,
    tau_syn: np.ndarray | float,
    tau_mem: np.ndarray | float,
    r: np.ndarray | float,
    v_leak: np.ndarray | float,
    w_in: np.ndarray | float,
    dt: float = 1.0,
    multi_spike: int = 0,
    reset_to_zero: int = 0,
    fire_at_threshold: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CubaLIF step (see the module docstring): (unit spikes, membrane_next, current_next)."""
    f = np.float32
    theta, tau_syn, tau_mem, r, v_leak, w_in = (
        np.asarray(a, f) for a in (threshold, tau_syn, tau_mem, r, v_leak, w_in)
    )
    current_next = (current + (f(dt) / tau_syn) * (w_in * x - current)).astype(f)
    v = (membrane + (f(dt) / tau_mem) * ((v_leak - membrane) + r * current_next)).astype(f)
    spikes, membrane_next = _fire_and_reset(v, theta, multi_spike, reset_to_zero, fire_at_threshold)
    return spikes, membrane_next, current_next


# --- ONNX functions ---------------------------------------------------------------------
def _attribute_constant(attribute: str, kind: str, output: str) -> onnx.NodeProto:
    """A Constant node whose value is the calling node's attribute ``attribute``."""
    field, proto_type = {
        "int": ("value_int", onnx.AttributeProto.INT),
        "float": ("value_float", onnx.AttributeProto.FLOAT),
    }[kind]
    ref = helper.make_attribute_ref(field, proto_type)
    ref.ref_attr_name = attribute
    node = helper.make_node("Constant", [], [output])
    node.attribute.append(ref)
    return node


def _choose(flag: str, if_one: str, if_zero: str, out: str, prefix: str) -> list[onnx.NodeProto]:
    """out = flag * if_one + (1 - flag) * if_zero: exact for a flag of 0 or 1."""
    n = helper.make_node
    return [
        n("Sub", ["one", flag], [f"{prefix}_not"]),
        n("Mul", [flag, if_one], [f"{prefix}_a"]),
        n("Mul", [f"{prefix}_not", if_zero], [f"{prefix}_b"]),
        n("Add", [f"{prefix}_a", f"{prefix}_b"], [out]),
    ]


def _flags(names: list[str]) -> list[onnx.NodeProto]:
    """Float constants ``one`` and each int attribute in ``names`` as a float of v's type."""
    n = helper.make_node
    nodes = [n("Constant", [], ["one_f"], value_float=1.0), n("CastLike", ["one_f", "v"], ["one"])]
    for name in names:
        nodes.append(_attribute_constant(name, "int", f"{name}_int"))
        nodes.append(n("CastLike", [f"{name}_int", "v"], [name]))
    return nodes


def _fire_and_reset_nodes(spikes: str, membrane_next: str) -> list[onnx.NodeProto]:
    """From ``v`` and ``threshold``: unit spikes (single or multi) and the reset membrane."""
    n = helper.make_node
    return [
        *_flags(["multi_spike", "reset_to_zero", "fire_at_threshold"]),
        n("Greater", ["v", "threshold"], ["above"]),
        n("CastLike", ["above", "v"], ["strict"]),
        n("GreaterOrEqual", ["v", "threshold"], ["reached"]),
        n("CastLike", ["reached", "v"], ["at_threshold"]),
        *_choose("fire_at_threshold", "at_threshold", "strict", "single", "rule"),
        n("Div", ["v", "threshold"], ["ratio"]),
        n("Floor", ["ratio"], ["crossed"]),
        n("Relu", ["crossed"], ["multi"]),
        *_choose("multi_spike", "multi", "single", spikes, "spike"),
        n("Mul", [spikes, "threshold"], ["subtracted"]),
        n("Min", [spikes, "one"], ["fired"]),
        n("Mul", ["v", "fired"], ["zeroed"]),
        *_choose("reset_to_zero", "zeroed", "subtracted", "removed", "reset"),
        n("Sub", ["v", "removed"], [membrane_next]),
    ]


def body_nodes(op_type: str) -> list[onnx.NodeProto]:
    """The function body of ``op_type`` (formal names as in SIGNATURES)."""
    n = helper.make_node
    if op_type == MULTI_SPIKE_IF:
        return [
            n("Add", ["membrane", "x"], ["v"]),
            n("Div", ["v", "threshold"], ["ratio"]),
            n("Floor", ["ratio"], ["crossed"]),
            n("Relu", ["crossed"], ["count"]),
            n("Mul", ["count", "threshold"], ["spikes"]),
            n("Sub", ["v", "spikes"], ["membrane_next"]),
        ]
    if op_type == LIF:
        return [
            _attribute_constant("dt", "float", "dt_f"),
            n("CastLike", ["dt_f", "membrane"], ["dt"]),
            n("Mul", ["r", "x"], ["drive"]),
            n("Div", ["dt", "tau"], ["rate"]),
            n("Sub", ["v_leak", "membrane"], ["toward_leak"]),
            n("Add", ["toward_leak", "drive"], ["pull"]),
            n("Mul", ["rate", "pull"], ["leaky_change"]),
            n("Mul", ["dt", "drive"], ["plain_change"]),
            # v is needed for the flags' types; it is defined once both changes are chosen
            n("Add", ["membrane", "leaky_change"], ["v_leaky"]),
            n("Add", ["membrane", "plain_change"], ["v_plain"]),
            n("Constant", [], ["one_l"], value_float=1.0),
            n("CastLike", ["one_l", "membrane"], ["one_m"]),
            _attribute_constant("leak", "int", "leak_int"),
            n("CastLike", ["leak_int", "membrane"], ["leak"]),
            n("Sub", ["one_m", "leak"], ["no_leak"]),
            n("Mul", ["leak", "v_leaky"], ["v_a"]),
            n("Mul", ["no_leak", "v_plain"], ["v_b"]),
            n("Add", ["v_a", "v_b"], ["v"]),
            *_fire_and_reset_nodes("spikes", "membrane_next"),
        ]
    if op_type == CUBA_LIF:
        return [
            _attribute_constant("dt", "float", "dt_f"),
            n("CastLike", ["dt_f", "membrane"], ["dt"]),
            n("Mul", ["w_in", "x"], ["weighted"]),
            n("Sub", ["weighted", "current"], ["current_pull"]),
            n("Div", ["dt", "tau_syn"], ["syn_rate"]),
            n("Mul", ["syn_rate", "current_pull"], ["current_change"]),
            n("Add", ["current", "current_change"], ["current_next"]),
            n("Mul", ["r", "current_next"], ["drive"]),
            n("Sub", ["v_leak", "membrane"], ["toward_leak"]),
            n("Add", ["toward_leak", "drive"], ["pull"]),
            n("Div", ["dt", "tau_mem"], ["mem_rate"]),
            n("Mul", ["mem_rate", "pull"], ["change"]),
            n("Add", ["membrane", "change"], ["v"]),
            *_fire_and_reset_nodes("spikes", "membrane_next"),
        ]
    raise ValueError(f"no neuron op {op_type!r}; the ops are {', '.join(OP_TYPES)}")


def function(op_type: str, opset: int) -> onnx.FunctionProto:
    """The ``onnx2snn.<op_type>`` function for a model whose default-domain opset is ``opset``."""
    inputs, outputs = SIGNATURES[op_type]
    fn = helper.make_function(
        DOMAIN,
        op_type,
        inputs=inputs,
        outputs=outputs,
        nodes=body_nodes(op_type),
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=[],
    )
    fn.attribute_proto.extend(helper.make_attribute(k, v) for k, v in DEFAULTS[op_type].items())
    return fn


def node(op_type: str, name: str, inputs: list[str], outputs: list[str], **attributes: int | float) -> onnx.NodeProto:
    """A node calling ``onnx2snn.<op_type>`` (attributes not given take their defaults)."""
    unknown = set(attributes) - set(DEFAULTS[op_type])
    if unknown:
        raise ValueError(f"{op_type} has no attribute {', '.join(sorted(unknown))}")
    return helper.make_node(op_type, inputs, outputs, name=name, domain=DOMAIN, **attributes)
