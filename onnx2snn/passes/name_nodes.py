"""Unique node names: errors, reports and membrane state tensors are named after nodes,
and some exporters leave names empty or repeat them. Rule: keep a name where it is unique,
otherwise ``<op>_<index>``."""

from __future__ import annotations

import onnx_graphsurgeon as gs


def name_nodes(graph: gs.Graph) -> gs.Graph:
    seen: set[str] = set()
    for i, node in enumerate(graph.nodes):
        name = node.name
        if not name or name in seen:
            name = f"{node.op}_{i}"
            while name in seen:
                name += "_"
            node.name = name
        seen.add(name)
    return graph
