"""Assemble an SNN artifact from a canonical ANN graph and calibrated neuron parameters.
Conversion uses it once at the end; calibration methods that simulate the SNN built so far
(Spike-Norm, bias/potential correction) use it for truncated networks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from . import __version__
from .artifact import ENCODINGS, FORMAT, SNNModel, attach_neuron
from .errors import ConfigError, ConversionError
from .graph import export_model, reached_from
from .neuron import DEFAULT_V_INIT, RESET_MODES
from .passes.calibrate import activation_nodes
from .passes.check_supported import clip_max
from .passes.maxpool_to_spiking import maxpool_to_spiking, pool_state_names
from .passes.relu_to_if import relu_to_if, state_names


@dataclass(frozen=True)
class Neurons:
    """How the IF neurons behave and are driven: shared by conversion and calibration."""

    reset: str = "subtract"
    v_init: float = DEFAULT_V_INIT
    timesteps: int = 16
    encoding: str = "direct"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reset not in RESET_MODES:
            raise ConfigError(f"reset must be one of {', '.join(RESET_MODES)}, got {self.reset!r}")
        if not 0.0 <= self.v_init < 1.0:
            raise ConfigError(f"v_init must lie in [0, 1), got {self.v_init}")
        if not isinstance(self.timesteps, int) or self.timesteps <= 0:
            raise ConfigError(f"timesteps must be a positive integer, got {self.timesteps}")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")


@dataclass
class Corrections:
    """Training-free corrections per IF layer (node name -> array broadcastable to the layer)."""

    current: dict[str, np.ndarray] = field(default_factory=dict)  # added to the input current every step
    membrane_init: dict[str, np.ndarray] = field(default_factory=dict)  # initial membrane


def shape_of(tensor: gs.Tensor) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in (tensor.shape or [])]


def assemble(
    graph: gs.Graph,
    thresholds: dict[str, np.ndarray],
    neurons: Neurons,
    *,
    corrections: Corrections | None = None,
    outputs: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    check: bool = True,
) -> SNNModel:
    """The SNN artifact of ``graph`` (canonical, checked, output activation stripped).
    ``outputs`` truncates the network to the tensors named (the head by default)."""
    g = graph.copy()
    if outputs is not None:
        tensors = g.tensors()
        g.outputs = [tensors[name] for name in outputs]
        for t in g.outputs:
            t.dtype = t.dtype or np.float32
        g.cleanup()
    corrections = corrections or Corrections()
    data_input = g.inputs[0]
    layers = []
    for node in activation_nodes(g):
        membrane, membrane_next, threshold = state_names(node.name)
        layers.append(
            {
                "node": node.name,
                "op": node.op,
                "clip_max": clip_max(node) if node.op == "Clip" else None,
                "membrane": membrane,
                "membrane_next": membrane_next,
                "threshold": threshold,
                "current_shift": f"{node.name}.current_shift" if node.name in corrections.current else None,
                "membrane_init": f"{node.name}.membrane_init" if node.name in corrections.membrane_init else None,
            }
        )
    output_names = [t.name for t in g.outputs]
    g = relu_to_if(g, thresholds, neurons.reset, neurons.v_init, corrections.current)
    varying = reached_from(
        g,
        [n.outputs[0].name for n in g.nodes if n.op == "IF"]
        + ([data_input.name] if neurons.encoding == "poisson" else []),
    )
    pools = []
    for node in g.nodes:
        if node.op in ("MaxPool", "GlobalMaxPool") and node.inputs[0].name in varying:
            acc, acc_next, pooled, pooled_next = pool_state_names(node.name)
            pools.append(
                {
                    "node": node.name,
                    "accumulated": acc,
                    "accumulated_next": acc_next,
                    "pooled": pooled,
                    "pooled_next": pooled_next,
                }
            )
    g = maxpool_to_spiking(g, varying)
    g.cleanup().toposort()
    meta = {
        "format": FORMAT,
        "version": __version__,
        "input": {"name": data_input.name, "shape": shape_of(data_input)},
        "outputs": output_names,
        "output_activations": {},
        "decode": "mean",
        "encoding": neurons.encoding,
        "timesteps": neurons.timesteps,
        "reset": neurons.reset,
        "v_init": float(neurons.v_init),
        "layers": layers,
        "pools": pools,
        **(metadata or {}),
    }
    proto = attach_neuron(export_model(g), meta)
    for layer in layers:  # initial membranes: read by the runtime, consumed by no node
        if layer["membrane_init"]:
            value = np.asarray(corrections.membrane_init[layer["node"]], np.float32)
            proto.graph.initializer.append(numpy_helper.from_array(value, layer["membrane_init"]))
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as e:
            raise ConversionError(f"the converted model fails the ONNX checker: {str(e).splitlines()[0]}") from e
    return SNNModel(proto)
