"""MatMul + Add -> Gemm: ``y = x W + b`` with a 2-D input, a constant 2-D ``W`` and a constant
bias broadcast along the rows is one Gemm (a fully connected layer, as PyTorch and Keras
export ``Linear``/``Dense`` in some versions). Larger-rank inputs keep MatMul + Add, which
are linear and convert as they are."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..graph import constant_value, is_constant


def matmul_add_to_gemm(graph: gs.Graph) -> gs.Graph:
    for mm in list(graph.nodes):
        if mm.op != "MatMul" or len(mm.outputs[0].outputs) != 1 or mm.outputs[0] in graph.outputs:
            continue
        x, w = mm.inputs
        add = mm.outputs[0].outputs[0]
        if add.op != "Add" or x.shape is None or len(x.shape) != 2 or not is_constant(w):
            continue
        bias = add.inputs[1] if add.inputs[0] is mm.outputs[0] else add.inputs[0]
        if not is_constant(bias) or constant_value(w).ndim != 2:
            continue
        b = constant_value(bias)
        n_out = constant_value(w).shape[1]
        if b.size not in (1, n_out) or b.ndim > 2 or (b.ndim == 2 and b.shape[0] != 1):
            continue
        gemm_bias = gs.Constant(f"{add.name}.bias", b.reshape(-1).repeat(n_out // b.size))
        add.op = "Gemm"
        add.attrs.clear()
        add.inputs = [x, w, gemm_bias]
        mm.outputs.clear()
    return graph.cleanup().toposort()
