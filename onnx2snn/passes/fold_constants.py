"""Constant folding: every subgraph that depends on no graph input is evaluated once and
replaced by its value (weights stored as Constant nodes, transposed weights, shape
arithmetic). Rule: onnx-graphsurgeon's ``fold_constants`` (evaluated by onnxruntime)."""

from __future__ import annotations

import onnx_graphsurgeon as gs


def fold_constants(graph: gs.Graph) -> gs.Graph:
    graph.fold_constants(error_ok=True).cleanup()
    # Constant nodes that fed nothing foldable stay as nodes; make them plain constants.
    for node in graph.nodes:
        if node.op == "Constant" and "value" in node.attrs and node.outputs:
            out = node.outputs[0]
            const = gs.Constant(out.name + "__const", values=node.attrs["value"].values)
            for consumer in list(out.outputs):
                consumer.inputs = [const if t is out else t for t in consumer.inputs]
    return graph.cleanup().toposort()
