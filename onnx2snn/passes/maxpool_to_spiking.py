"""Max-pooling on spikes.

A MaxPool applied to spike trains step by step would pass the max of *single steps*, whose
rate exceeds the max of the input rates (any input that fires makes the output fire). Instead
the pool runs over the accumulated input and emits the difference step to step:

    S_t = S_{t-1} + x_t             (accumulated input, a state)
    P_t = MaxPool(S_t)              (a state too)
    y_t = P_t - P_{t-1}

so sum_{s<=t} y_s = MaxPool(S_t) and the decoded rate after t steps is exactly
``max over the window of (S_t / t)``: the max of the input rates observed so far, with no
extra error beyond that of the rates themselves (it converges as they do). The output is no
longer binary (differences of accumulated maxima), which linear layers and IF neurons
downstream take as any other current. A MaxPool that no neuron reaches (on the input under
direct encoding) stays as it is.

``spiking_pool`` names every tensor and node the rewrite makes for one pool; those names go into
the artifact's metadata."""

from __future__ import annotations

from typing import Any

import onnx_graphsurgeon as gs

from ..errors import ConversionError
from .check_supported import POOLS


def spiking_pool(node_name: str) -> dict[str, Any]:
    """The artifact's record of a spiking max-pool: its nodes and its two states."""
    return {
        "node": node_name,
        "accumulate": f"{node_name}.accumulate",
        "difference": f"{node_name}.difference",
        "accumulated": f"{node_name}.accumulated",
        "accumulated_next": f"{node_name}.accumulated_next",
        "pooled": f"{node_name}.pooled",
        "pooled_next": f"{node_name}.pooled_next",
    }


def spiking_pools(graph: gs.Graph, time_varying: set[str]) -> list[gs.Node]:
    """The max-pools that ``time_varying`` tensors (reached by spikes or a Poisson input) reach."""
    return [n for n in graph.toposort().nodes if n.op in POOLS and n.inputs[0].name in time_varying]


def maxpool_to_spiking(graph: gs.Graph, time_varying: set[str]) -> gs.Graph:
    """Rewrite every max-pool of ``spiking_pools``."""
    for node in spiking_pools(graph, time_varying):
        if len(node.outputs) > 1 and (node.outputs[1].outputs or node.outputs[1] in graph.outputs):
            raise ConversionError("MaxPool indices are not supported on spikes", node.name, node.op)
        x, y = node.inputs[0], node.outputs[0]
        if x.shape is None or y.shape is None:
            raise ConversionError("the pool's shapes are unknown after shape inference", node.name, node.op)
        names = spiking_pool(node.name)
        accumulated = gs.Variable(names["accumulated"], dtype=x.dtype, shape=list(x.shape))
        accumulated_next = gs.Variable(names["accumulated_next"], dtype=x.dtype, shape=list(x.shape))
        pooled = gs.Variable(names["pooled"], dtype=y.dtype, shape=list(y.shape))
        pooled_next = gs.Variable(names["pooled_next"], dtype=y.dtype, shape=list(y.shape))
        graph.nodes.append(gs.Node("Add", names["accumulate"], inputs=[accumulated, x], outputs=[accumulated_next]))
        node.inputs = [accumulated_next]
        node.outputs = [pooled_next]
        graph.nodes.append(gs.Node("Sub", names["difference"], inputs=[pooled_next, pooled], outputs=[y]))
        graph.inputs += [accumulated, pooled]
        graph.outputs += [accumulated_next, pooled_next]
    return graph
