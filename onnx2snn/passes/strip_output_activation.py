"""A trailing Softmax/LogSoftmax moves out of the time loop.

The SNN's prediction at step t is the mean of the head's outputs over steps 1..t; a softmax
is not linear, so ``softmax(mean(y_t))`` is computed after decoding, never ``mean(softmax(y_t))``.
The pass removes the activation from the graph; ``output_activations`` says what was removed,
for the artifact's decoding metadata."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..graph import replace_uses

OUTPUT_ACTIVATIONS = ("Softmax", "LogSoftmax")


def _trailing(graph: gs.Graph) -> list[gs.Node]:
    found = []
    for out in graph.outputs:
        producer = out.inputs[0] if out.inputs else None
        if producer is not None and producer.op in OUTPUT_ACTIVATIONS:
            found.append(producer)
    return found


def output_activations(graph: gs.Graph) -> dict[str, dict]:
    """Graph output name -> {"op": ..., "axis": ...} for each trailing activation."""
    return {node.outputs[0].name: {"op": node.op, "axis": int(node.attrs.get("axis", -1))} for node in _trailing(graph)}


def strip_output_activation(graph: gs.Graph) -> gs.Graph:
    for node in _trailing(graph):
        if len(node.inputs[0].outputs) == 1 and replace_uses(graph, node.outputs[0], node.inputs[0]):
            node.outputs.clear()
    return graph.cleanup().toposort()
