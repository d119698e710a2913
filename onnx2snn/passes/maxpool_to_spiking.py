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
direct encoding) stays as it is."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..errors import ConversionError


def pool_state_names(node_name: str) -> tuple[str, str, str, str]:
    """(accumulated in, accumulated out, pooled in, pooled out) state tensor names."""
    return (
        f"{node_name}.accumulated",
        f"{node_name}.accumulated_next",
        f"{node_name}.pooled",
        f"{node_name}.pooled_next",
    )


def maxpool_to_spiking(graph: gs.Graph, time_varying: set[str]) -> gs.Graph:
    """Rewrite every MaxPool whose input is in ``time_varying`` (tensor names reached by spikes
    or a Poisson input)."""
    for node in list(graph.toposort().nodes):
        if node.op not in ("MaxPool", "GlobalMaxPool") or node.inputs[0].name not in time_varying:
            continue
        if len(node.outputs) > 1 and (node.outputs[1].outputs or node.outputs[1] in graph.outputs):
            raise ConversionError("MaxPool indices are not supported on spikes", node.name, node.op)
        x, y = node.inputs[0], node.outputs[0]
        if x.shape is None or y.shape is None:
            raise ConversionError("the pool's shapes are unknown after shape inference", node.name, node.op)
        acc_in, acc_out, pooled_in, pooled_out = pool_state_names(node.name)
        accumulated = gs.Variable(acc_in, dtype=x.dtype, shape=list(x.shape))
        accumulated_next = gs.Variable(acc_out, dtype=x.dtype, shape=list(x.shape))
        pooled = gs.Variable(pooled_in, dtype=y.dtype, shape=list(y.shape))
        pooled_next = gs.Variable(pooled_out, dtype=y.dtype, shape=list(y.shape))
        graph.nodes.append(
            gs.Node("Add", f"{node.name}.accumulate", inputs=[accumulated, x], outputs=[accumulated_next])
        )
        node.inputs = [accumulated_next]
        node.outputs = [pooled_next]
        graph.nodes.append(gs.Node("Sub", f"{node.name}.difference", inputs=[pooled_next, pooled], outputs=[y]))
        graph.inputs += [accumulated, pooled]
        graph.outputs += [accumulated_next, pooled_next]
    return graph
