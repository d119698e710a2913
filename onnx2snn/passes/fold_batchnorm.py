"""Fold BatchNormalization into the layer before it.

With ``s = gamma / sqrt(var + eps)``, BN computes ``y = s * (x - mean) + beta``
(Ioffe & Szegedy 2015). After a Conv or Gemm ``x = W a + b`` it becomes the same layer with
``W' = s * W`` (per output channel) and ``b' = s * (b - mean) + beta``, the standard
inference-time fold used before ANN->SNN conversion (Rueckauer et al. 2017, sec. 2.3).
A BN that follows no foldable layer becomes the per-channel affine ``Mul(s) -> Add(beta - s*mean)``,
which a spiking layer passes as it passes any linear map.

Integer weights ``W = (q - z) * alpha`` behind a DequantizeLinear stay integer: the fold goes into
their scale, ``alpha' = s * alpha`` per output channel (a per-tensor scale becomes per-channel),
which is exact in the integers."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import ConversionError
from ..graph import constant_value, is_constant, replace_uses
from .quantized_weights import integer_weight


def _bn_affine(node: gs.Node) -> tuple[np.ndarray, np.ndarray]:
    if not all(is_constant(t) for t in node.inputs[1:5]):
        raise ConversionError("BatchNormalization with non-constant statistics", node.name, node.op)
    gamma, beta, mean, var = (constant_value(t).astype(np.float64) for t in node.inputs[1:5])
    scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    return scale, beta - scale * mean


def _fold_into_scale(producer: gs.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    """Fold into integer weights behind a DequantizeLinear: their scale takes ``scale`` along
    the output-channel axis; False where that axis cannot carry it (blocked scales, another
    axis, a weight other nodes read too)."""
    weight = producer.inputs[1]
    dq = integer_weight(weight)
    if dq is None or len(weight.outputs) != 1 or dq.attrs.get("block_size", 0):
        return False
    rank = len(dq.inputs[0].shape)
    if producer.op == "Conv":
        axis = 0
    elif producer.op == "Gemm" and not producer.attrs.get("transA", 0):
        axis = 0 if producer.attrs.get("transB", 0) else 1
        if float(producer.attrs.get("alpha", 1.0)) != 1.0:
            return False
    else:
        return False
    alpha = constant_value(dq.inputs[1]).astype(np.float64)
    if alpha.ndim == 1 and int(dq.attrs.get("axis", 1)) % rank != axis:
        return False
    bias = producer.inputs[2] if len(producer.inputs) > 2 else None
    if bias is not None and not is_constant(bias):
        return False
    b = constant_value(bias).astype(np.float64) if bias is not None else 0.0
    if producer.op == "Gemm":
        b = b * float(producer.attrs.get("beta", 1.0))
        producer.attrs["beta"] = 1.0
    dtype = constant_value(dq.inputs[1]).dtype
    base = producer.name or producer.op
    dq.inputs[1] = gs.Constant(f"{base}.weight_scale_bn", (alpha * scale).astype(dtype))
    dq.attrs["axis"] = axis
    zero = dq.inputs[2] if len(dq.inputs) > 2 and dq.inputs[2].name else None
    if zero is not None and constant_value(zero).ndim == 0:  # a per-channel scale needs a per-channel zero point
        z = constant_value(zero)
        dq.inputs[2] = gs.Constant(f"{base}.weight_zero_point", np.full(scale.shape, z, dtype=z.dtype))
    bias = gs.Constant(f"{base}.bias_bn", (np.broadcast_to(b, scale.shape) * scale + shift).astype(dtype))
    if len(producer.inputs) > 2:
        producer.inputs[2] = bias
    else:
        producer.inputs.append(bias)
    return True


def _fold_into(producer: gs.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    """Rescale ``producer``'s weights and bias in place; False if its form is not foldable."""
    if producer.op in ("Conv", "Gemm") and len(producer.inputs) > 1 and integer_weight(producer.inputs[1]):
        return _fold_into_scale(producer, scale, shift)
    if producer.op == "Conv":
        if not is_constant(producer.inputs[1]):
            return False
        w = constant_value(producer.inputs[1]).astype(np.float64)
        b = constant_value(producer.inputs[2]).astype(np.float64) if len(producer.inputs) > 2 else 0.0
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    elif producer.op == "Gemm":
        if not is_constant(producer.inputs[1]) or producer.attrs.get("transA", 0):
            return False
        alpha = float(producer.attrs.get("alpha", 1.0))
        beta = float(producer.attrs.get("beta", 1.0))
        w = constant_value(producer.inputs[1]).astype(np.float64) * alpha
        b = constant_value(producer.inputs[2]).astype(np.float64) * beta if len(producer.inputs) > 2 else 0.0
        w = w * (scale[:, None] if producer.attrs.get("transB", 0) else scale[None, :])
        producer.attrs["alpha"] = 1.0
        producer.attrs["beta"] = 1.0
    else:
        return False
    b = np.broadcast_to(b, scale.shape) * scale + shift
    dtype = constant_value(producer.inputs[1]).dtype
    base = producer.name or producer.op
    producer.inputs[1] = gs.Constant(f"{base}.weight_bn", w.astype(dtype))
    bias = gs.Constant(f"{base}.bias_bn", b.astype(dtype))
    if len(producer.inputs) > 2:
        producer.inputs[2] = bias
    else:
        producer.inputs.append(bias)
    return True


def fold_batchnorm(graph: gs.Graph) -> gs.Graph:
    for node in list(graph.nodes):
        if node.op != "BatchNormalization":
            continue
        if node.attrs.get("training_mode", 0):
            raise ConversionError("BatchNormalization in training mode", node.name, node.op)
        scale, shift = _bn_affine(node)
        x, y = node.inputs[0], node.outputs[0]
        producer = x.inputs[0] if x.inputs else None
        sole_use = len(x.outputs) == 1 and x not in graph.outputs
        if producer is not None and sole_use and _fold_into(producer, scale, shift):
            if replace_uses(graph, y, x):
                node.outputs.clear()
                continue
        # a free-standing BN: per-channel affine along axis 1
        rank = len(x.shape) if x.shape is not None else 4
        shape = (-1,) + (1,) * max(rank - 2, 0)
        dtype = np.float32
        mid = gs.Variable(f"{node.name}.scaled", dtype=y.dtype, shape=y.shape)
        mul = gs.Node(
            "Mul",
            f"{node.name}.scale",
            inputs=[x, gs.Constant(f"{node.name}.s", scale.reshape(shape).astype(dtype))],
            outputs=[mid],
        )
        node.op, node.name = "Add", f"{node.name}.shift"
        node.attrs.clear()
        node.inputs = [mid, gs.Constant(f"{node.name}.b", shift.reshape(shape).astype(dtype))]
        graph.nodes.append(mul)
    return graph.cleanup().toposort()
