"""Replace every activation by an integrate-and-fire neuron (the conversion proper).

``Relu(x)`` and ``Clip(x, 0, m)`` become ``IF(x, membrane, threshold) -> (spikes, membrane_next)``
(Cao et al. 2015; Diehl et al. 2015): over T steps the mean of the spikes, each of amplitude
theta, approaches ``clip(x, 0, theta)`` with error below ``theta / T``. Each neuron's membrane
becomes a graph input ``<node>.membrane`` and output ``<node>.membrane_next`` (the stateful step
form), its threshold an initializer ``<node>.threshold``.

Optional calibrated correction (Li et al. 2021): a constant ``<node>.current_shift`` added to
the neuron's input current every step (an ``Add`` node ``<node>.current_correction``)."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import ConversionError
from ..neuron import DOMAIN, OP_TYPE
from .calibrate import activation_nodes


def state_names(node_name: str) -> tuple[str, str, str]:
    """(membrane input, membrane output, threshold) tensor names of a neuron."""
    return f"{node_name}.membrane", f"{node_name}.membrane_next", f"{node_name}.threshold"


def relu_to_if(
    graph: gs.Graph,
    thresholds: dict[str, np.ndarray],
    reset: str = "subtract",
    v_init: float = 0.5,
    current_shift: dict[str, np.ndarray] | None = None,
) -> gs.Graph:
    current_shift = current_shift or {}
    for node in activation_nodes(graph):
        if node.name not in thresholds:
            raise ConversionError("no threshold was calibrated for this activation", node.name, node.op)
        out = node.outputs[0]
        if out.shape is None or out.dtype is None:
            raise ConversionError("the activation's shape is unknown after shape inference", node.name, node.op)
        mem_in, mem_out, theta = state_names(node.name)
        membrane = gs.Variable(mem_in, dtype=out.dtype, shape=list(out.shape))
        membrane_next = gs.Variable(mem_out, dtype=out.dtype, shape=list(out.shape))
        threshold = gs.Constant(theta, np.asarray(thresholds[node.name], dtype=np.float32))
        current = node.inputs[0]
        if node.name in current_shift:
            shifted = gs.Variable(f"{node.name}.shifted_current", dtype=out.dtype, shape=list(out.shape))
            shift = gs.Constant(f"{node.name}.current_shift", np.asarray(current_shift[node.name], np.float32))
            graph.nodes.append(
                gs.Node("Add", f"{node.name}.current_correction", inputs=[current, shift], outputs=[shifted])
            )
            current = shifted
        node.op, node.domain = OP_TYPE, DOMAIN
        node.attrs = {"reset_to_zero": int(reset == "zero"), "v_init": float(v_init)}
        node.inputs = [current, membrane, threshold]
        node.outputs = [out, membrane_next]
        graph.inputs.append(membrane)
        graph.outputs.append(membrane_next)
    return graph
