"""Drop Dropout and Identity: at inference both pass their input through unchanged,
``y = x`` (Dropout in eval mode, Srivastava et al. 2014)."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..graph import replace_uses

PASS_THROUGH = ("Dropout", "Identity")


def remove_identity(graph: gs.Graph) -> gs.Graph:
    for node in list(graph.nodes):
        if node.op not in PASS_THROUGH:
            continue
        # Dropout's optional mask output must be unused for the node to vanish.
        if len(node.outputs) > 1 and any(t.outputs or t in graph.outputs for t in node.outputs[1:]):
            continue
        if replace_uses(graph, node.outputs[0], node.inputs[0]):
            node.outputs.clear()
    return graph.cleanup().toposort()
