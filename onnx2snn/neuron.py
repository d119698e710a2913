"""The integrate-and-fire neuron: its ONNX function and its numpy reference, side by side.

Op ``IF`` in domain ``onnx2snn`` (version 1), a model-local ONNX function:

    inputs   x (input current), membrane, threshold (scalar or broadcastable per channel)
    outputs  spikes, membrane_next
    attrs    reset_to_zero: int = 0   0: reset by subtraction, 1: reset to zero
             v_init: float = 0.5      initial membrane as a fraction of the threshold
                                       (read by whoever drives the state; unused in the body)

One step, with ``v = membrane + x``:

    spikes        = threshold * (v >= threshold)       # the spike carries amplitude theta
    membrane_next = v - spikes                          # reset by subtraction: keeps the residue
                  | v * (v < threshold)                 # reset to zero

Because spikes carry the threshold as amplitude, the weights downstream stay untouched
(threshold balancing, equivalent to weight normalization; Diehl et al. 2015).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from .errors import ConfigError

DOMAIN = "onnx2snn"
DOMAIN_VERSION = 1
OP_TYPE = "IF"
RESET_MODES = ("subtract", "zero")
DEFAULT_V_INIT = 0.5
ENCODINGS = ("direct", "poisson")  # how the input drives the first layer: the same current every step, or spikes
SPIKE_MODES = ("single", "multi")  # IF (one spike a step at most) or MultiSpikeIF (neurons.py)


@dataclass(frozen=True)
class Neurons:
    """How the IF neurons behave and are driven: shared by conversion and calibration."""

    reset: str = "subtract"
    v_init: float = DEFAULT_V_INIT
    timesteps: int = 16
    encoding: str = "direct"
    seed: int = 0
    input_encodings: tuple[tuple[str, str], ...] = ()  # (data input, encoding) where it differs
    spike_mode: str = "single"

    def encoding_of(self, name: str) -> str:
        """The encoding of data input ``name``."""
        return dict(self.input_encodings).get(name, self.encoding)

    def __post_init__(self) -> None:
        if self.reset not in RESET_MODES:
            raise ConfigError(f"reset must be one of {', '.join(RESET_MODES)}, got {self.reset!r}")
        if not 0.0 <= self.v_init < 1.0:
            raise ConfigError(f"v_init must lie in [0, 1), got {self.v_init}")
        if not isinstance(self.timesteps, int) or self.timesteps <= 0:
            raise ConfigError(f"timesteps must be a positive integer, got {self.timesteps}")
        for encoding in [self.encoding] + [e for _, e in self.input_encodings]:
            if encoding not in ENCODINGS:
                raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if self.spike_mode not in SPIKE_MODES:
            raise ConfigError(f"spike_mode must be one of {', '.join(SPIKE_MODES)}, got {self.spike_mode!r}")
        if self.spike_mode == "multi" and self.reset != "subtract":
            raise ConfigError("spike_mode 'multi' resets by subtraction only (reset='subtract')")


@dataclass
class Corrections:
    """Training-free corrections per IF layer (node name -> array broadcastable to the layer)."""

    current: dict[str, np.ndarray] = field(default_factory=dict)  # added to the input current every step
    membrane_init: dict[str, np.ndarray] = field(default_factory=dict)  # initial membrane


def if_step(
    x: np.ndarray, membrane: np.ndarray, threshold: np.ndarray | float, reset: str = "subtract"
) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference of one IF step: returns (spikes, membrane_next)."""
    v = membrane + x
    fired = (v >= threshold).astype(v.dtype)
    spikes = fired * np.asarray(threshold, dtype=v.dtype)
    if reset == "zero":
        return spikes, v * (1 - fired)
    return spikes, v - spikes


def start_membrane(threshold: np.ndarray | float, v_init: float = DEFAULT_V_INIT) -> np.ndarray:
    """v_0 = v_init * threshold (float32, the threshold's shape): where every neuron starts
    unless a potential correction stored its own initial membrane."""
    return np.float32(v_init) * np.asarray(threshold, dtype=np.float32)


def initial_membrane(
    shape: tuple[int, ...], threshold: np.ndarray | float, v_init: float = DEFAULT_V_INIT
) -> np.ndarray:
    """v_0 = v_init * threshold, broadcast to the state's shape."""
    return np.broadcast_to(start_membrane(threshold, v_init), shape).astype(np.float32)


# fired = [v >= theta] without a bool tensor: HardSigmoid(ALPHA * (v - theta) + 1) is 1 where
# v - theta >= 0 and 0 below, as long as the difference is not subnormal (|v - theta| < 1.2e-38,
# i.e. never for thresholds above about 1e-30: neighbouring floats near theta are further apart).
# onnxruntime runs it about 10% faster a step than GreaterOrEqual + Cast (benchmarks/speed.py).
ALPHA = float(np.finfo(np.float32).max)


def body_nodes(reset: str | None, opset: int | None = None) -> list[onnx.NodeProto]:
    """Nodes of the function body. ``reset=None`` reads the node's attribute (the generic
    body kept in artifacts: plain comparison and cast, portable to any runtime); "subtract"
    or "zero" gives the shorter body for one mode, which sessions swap in (and the unrolled
    form scans). Formal names: inputs x, membrane, threshold; outputs spikes, membrane_next.
    ``opset``: the model's; below 15 (no CastLike) the generic body casts to float32."""
    n = helper.make_node

    def cast_like(value: str, like: str, out: str) -> onnx.NodeProto:
        if opset is not None and opset < 15:
            return n("Cast", [value], [out], to=onnx.TensorProto.FLOAT)
        return n("CastLike", [value, like], [out])

    if reset is not None:
        nodes = [
            n("Add", ["membrane", "x"], ["v"]),
            n("Sub", ["v", "threshold"], ["over"]),
            n("HardSigmoid", ["over"], ["fired"], alpha=ALPHA, beta=1.0),
            n("Mul", ["fired", "threshold"], ["spikes"]),
        ]
    else:
        nodes = [
            n("Add", ["membrane", "x"], ["v"]),
            n("GreaterOrEqual", ["v", "threshold"], ["fired_bool"]),
            cast_like("fired_bool", "v", "fired"),
            n("Mul", ["fired", "threshold"], ["spikes"]),
        ]
    if reset == "subtract":
        return nodes + [n("Sub", ["v", "spikes"], ["membrane_next"])]
    if reset == "zero":
        return nodes + [
            n("Mul", ["v", "fired"], ["v_fired"]),
            n("Sub", ["v", "v_fired"], ["membrane_next"]),
        ]
    # generic: membrane_next = v - r*fired*v - (1-r)*spikes, exact in floating point for r in {0,1}
    r = helper.make_attribute_ref("value_int", onnx.AttributeProto.INT)
    r.ref_attr_name = "reset_to_zero"
    const_r = n("Constant", [], ["r_int"])
    const_r.attribute.append(r)
    return nodes + [
        const_r,
        cast_like("r_int", "v", "r"),
        n("Mul", ["fired", "r"], ["zeroed"]),
        n("Mul", ["zeroed", "v"], ["v_zeroed"]),
        n("Sub", ["fired", "zeroed"], ["subtracted"]),
        n("Mul", ["subtracted", "threshold"], ["v_subtracted"]),
        n("Sub", ["v", "v_zeroed"], ["v_rest"]),
        n("Sub", ["v_rest", "v_subtracted"], ["membrane_next"]),
    ]


def inline_nodes(reset: str) -> list[onnx.NodeProto]:
    """The body for one reset mode in the most widely supported operators (no function, no
    attribute reference, no CastLike or GreaterOrEqual): ``fired = Cast(Not(v < threshold))``,
    exactly the artifact's ``v >= threshold``. What ``export --inline`` writes for each IF node;
    same formal names as ``body_nodes``."""
    if reset not in RESET_MODES:
        raise ValueError(f"reset must be one of {RESET_MODES}, got {reset!r}")
    n = helper.make_node
    nodes = [
        n("Add", ["membrane", "x"], ["v"]),
        n("Less", ["v", "threshold"], ["below"]),
        n("Not", ["below"], ["fired_bool"]),
        n("Cast", ["fired_bool"], ["fired"], to=onnx.TensorProto.FLOAT),
        n("Mul", ["fired", "threshold"], ["spikes"]),
    ]
    if reset == "subtract":
        return nodes + [n("Sub", ["v", "spikes"], ["membrane_next"])]
    return nodes + [n("Mul", ["v", "fired"], ["v_fired"]), n("Sub", ["v", "v_fired"], ["membrane_next"])]


def if_function(opset: int, reset: str | None = None) -> onnx.FunctionProto:
    """The ``onnx2snn.IF`` function definition, for a model whose default-domain opset is ``opset``."""
    if reset is not None and reset not in RESET_MODES:
        raise ValueError(f"reset must be one of {RESET_MODES}, got {reset!r}")
    fn = helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs=["x", "membrane", "threshold"],
        outputs=["spikes", "membrane_next"],
        nodes=body_nodes(reset, opset),
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=[],
        doc_string=__doc__.split("\n\n")[1] if __doc__ else "",
    )
    fn.attribute_proto.extend(
        [
            helper.make_attribute("reset_to_zero", 0),
            helper.make_attribute("v_init", DEFAULT_V_INIT),
        ]
    )
    return fn


def if_attributes(reset: str = "subtract", v_init: float = DEFAULT_V_INIT) -> dict[str, int | float]:
    """The attributes of an ``onnx2snn.IF`` node for a reset mode and initial membrane."""
    if reset not in RESET_MODES:
        raise ValueError(f"reset must be one of {RESET_MODES}, got {reset!r}")
    return {"reset_to_zero": int(reset == "zero"), "v_init": float(v_init)}


def if_node(
    name: str,
    inputs: list[str],
    outputs: list[str],
    reset: str = "subtract",
    v_init: float = DEFAULT_V_INIT,
) -> onnx.NodeProto:
    """An ``onnx2snn.IF`` node calling the function."""
    return helper.make_node(OP_TYPE, inputs, outputs, name=name, domain=DOMAIN, **if_attributes(reset, v_init))
