"""Shape inference: every tensor gets its dtype and shape, so later passes can size the
neurons' membranes. Rule: ONNX's own shape inference with data propagation (shape
subgraphs like ``x.view(x.size(0), -1)`` are resolved where they are static)."""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from ..errors import ConversionError
from ..graph import export_model, import_graph


def infer_shapes(graph: gs.Graph) -> gs.Graph:
    model = export_model(graph)
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # onnx raises several unrelated types here
        raise ConversionError(f"shape inference failed: {e}") from e
    return import_graph(model)
