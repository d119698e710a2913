"""Replace every activation by an integrate-and-fire neuron (the conversion proper).

``Relu(x)`` and ``Clip(x, 0, m)`` become ``IF(x, membrane, threshold) -> (spikes, membrane_next)``
(Cao et al. 2015; Diehl et al. 2015): over T steps the mean of the spikes, each of amplitude
theta, approaches ``clip(x, 0, theta)`` with error below ``theta / T``. Each neuron's membrane
becomes a graph input and output (the stateful step form), its threshold an initializer.

Optional calibrated correction (Li et al. 2021): a constant current shift added to the
neuron's input current every step (an ``Add`` node before the neuron).

``neuron_layer`` names every tensor and node the rewrite makes for one activation; those names
go into the artifact's metadata, which is all a reader of the artifact relies on."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import ConversionError
from ..neuron import DEFAULT_V_INIT, DOMAIN, OP_TYPE, if_attributes
from ..neurons import MULTI_SPIKE_IF
from .check_supported import ACTIVATIONS, clip_max


def activation_nodes(graph: gs.Graph) -> list[gs.Node]:
    """The nodes that become IF neurons, in graph order."""
    return [n for n in graph.toposort().nodes if n.op in ACTIVATIONS]


def neuron_layer(node: gs.Node, current_shift: bool = False) -> dict[str, Any]:
    """The artifact's record of the neuron that replaces activation ``node``: the op it
    replaces and the names of its state, threshold, initial membrane (a constant output the
    artifact adds) and bias correction (None where there is none)."""
    name = node.name
    return {
        "node": name,
        "op": node.op,
        "clip_max": clip_max(node) if node.op == "Clip" else None,
        "membrane": f"{name}.membrane",
        "membrane_next": f"{name}.membrane_next",
        "threshold": f"{name}.threshold",
        "current_shift": f"{name}.current_shift" if current_shift else None,
        "current_correction": f"{name}.current_correction" if current_shift else None,
        "membrane_init": f"{name}.membrane_init",
    }


def relu_to_if(
    graph: gs.Graph,
    thresholds: dict[str, np.ndarray],
    reset: str = "subtract",
    v_init: float = DEFAULT_V_INIT,
    current_shift: dict[str, np.ndarray] | None = None,
    spike_mode: str = "single",
) -> gs.Graph:
    """``spike_mode="multi"``: MultiSpikeIF neurons (as many spikes a step as thresholds crossed)."""
    current_shift = current_shift or {}
    attrs = if_attributes(reset, v_init)
    op_type = OP_TYPE
    if spike_mode == "multi":
        attrs, op_type = {"v_init": float(v_init)}, MULTI_SPIKE_IF
    for node in activation_nodes(graph):
        if node.name not in thresholds:
            raise ConversionError("no threshold was calibrated for this activation", node.name, node.op)
        out = node.outputs[0]
        if out.shape is None or out.dtype is None:
            raise ConversionError("the activation's shape is unknown after shape inference", node.name, node.op)
        names = neuron_layer(node, current_shift=node.name in current_shift)
        membrane = gs.Variable(names["membrane"], dtype=out.dtype, shape=list(out.shape))
        membrane_next = gs.Variable(names["membrane_next"], dtype=out.dtype, shape=list(out.shape))
        threshold = gs.Constant(names["threshold"], np.asarray(thresholds[node.name], dtype=np.float32))
        current = node.inputs[0]
        if node.name in current_shift:
            shifted = gs.Variable(f"{node.name}.shifted_current", dtype=out.dtype, shape=list(out.shape))
            shift = gs.Constant(names["current_shift"], np.asarray(current_shift[node.name], np.float32))
            graph.nodes.append(gs.Node("Add", names["current_correction"], inputs=[current, shift], outputs=[shifted]))
            current = shifted
        node.op, node.domain = op_type, DOMAIN
        node.attrs = dict(attrs)
        node.inputs = [current, membrane, threshold]
        node.outputs = [out, membrane_next]
        graph.inputs.append(membrane)
        graph.outputs.append(membrane_next)
    return graph
