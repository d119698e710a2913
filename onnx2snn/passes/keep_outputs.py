"""Keep only the model outputs a user names (e.g. a classifier's probabilities without its
label output): ``outputs := names``, and every node that feeds only the others is dropped."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_graphsurgeon as gs

from ..errors import ConversionError


def keep_outputs(graph: gs.Graph, names: Sequence[str]) -> gs.Graph:
    available = {t.name: t for t in graph.outputs}
    missing = [n for n in names if n not in available]
    if missing:
        raise ConversionError(
            f"no model output named {', '.join(map(repr, missing))}; the outputs are {', '.join(available)}"
        )
    graph.outputs = [available[n] for n in names]
    return graph.cleanup(remove_unused_graph_inputs=False)
