"""Integer weights stay integer: ``DequantizeLinear(q, scale[, zero_point])`` of an integer
constant is a weight, which conversion keeps as it is. Constant folding leaves every
DequantizeLinear alone (a QuantizeLinear of a float weight in front of one, as PyTorch's
exporters write fake-quantized weights, folds into the integers it makes); BatchNorm folds into
the scale. Quantization of activations (a QuantizeLinear or DequantizeLinear of anything that
depends on the input) is refused by check_supported."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..graph import constant_value, is_constant

LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the layers whose weights stay integer


def integer_weight(t: gs.Tensor) -> gs.Node | None:
    """The DequantizeLinear that makes weight ``t`` from an integer constant, if it is one."""
    producer = t.inputs[0] if t.inputs else None
    if producer is None or producer.op != "DequantizeLinear" or not is_constant(producer.inputs[0]):
        return None
    if not all(is_constant(s) for s in producer.inputs[1:] if s.name):
        return None
    dtype = producer.inputs[0].dtype
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = ""
    return producer if kind in ("i", "u") or "int" in str(dtype) else None


# integer types QuantizeLinear makes here (TensorProto data type -> numpy type, range); INT4 and
# the float8 types are left as they are (and refused by check_supported if they stay)
TYPES = {2: (np.uint8, 0, 255), 3: (np.int8, -128, 127), 4: (np.uint16, 0, 65535), 5: (np.int16, -32768, 32767)}
BY_DTYPE = {np.dtype(t): (t, lo, hi) for t, lo, hi in TYPES.values()}


def shaped(value: np.ndarray, rank: int, axis: int, block_size: int = 0, length: int = 0) -> np.ndarray:
    """A scale or zero point broadcast against a rank-``rank`` tensor (per tensor, axis or block)."""
    if value.ndim == 0:
        return value
    axis %= rank
    if block_size:
        return np.take(np.repeat(value, block_size, axis=axis), np.arange(length), axis=axis)
    return value.reshape([-1 if i == axis else 1 for i in range(rank)])


def fold_weight_quantize(graph: gs.Graph) -> gs.Graph:
    for node in list(graph.nodes):
        if node.op != "QuantizeLinear" or not all(is_constant(t) for t in node.inputs if t.name):
            continue
        if len(node.inputs) > 2 and node.inputs[2].name:
            zero = constant_value(node.inputs[2])
            kind = BY_DTYPE.get(zero.dtype)
        else:  # no zero point: output_dtype (opset 21) says the type, uint8 by default
            kind = TYPES.get(int(node.attrs.get("output_dtype", 2)))
            zero = np.zeros((), kind[0]) if kind else None
        w = constant_value(node.inputs[0]).astype(np.float32)
        if kind is None or w.ndim == 0 and node.attrs.get("block_size", 0):
            continue
        dtype, lo, hi = kind
        axis, block = int(node.attrs.get("axis", 1)), int(node.attrs.get("block_size", 0))
        length = w.shape[axis % w.ndim] if w.ndim else 0
        scale = shaped(constant_value(node.inputs[1]).astype(np.float32), w.ndim, axis, block, length)
        offset = shaped(zero.astype(np.int64), w.ndim, axis, block, length)
        q = np.clip(np.rint(w / scale).astype(np.int64) + offset, lo, hi).astype(dtype)
        out = node.outputs[0]
        integers = gs.Constant(f"{out.name}.integers", q)
        for consumer in list(out.outputs):
            consumer.inputs = [integers if t is out else t for t in consumer.inputs]
        node.outputs.clear()
    return graph.cleanup()
