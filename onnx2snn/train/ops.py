"""The ONNX operators the converter accepts (and BatchNormalization, which it folds), in torch:
one function per op type, each taking the node and its input tensors and returning its outputs,
with ONNX's semantics (opset 13 and later; attributes that moved to inputs are read from either
place).

Shape arithmetic (Shape, Gather, Concat of int64 tensors, ...) runs in torch too, so a graph
with a dynamic batch axis works at any batch size. What is not here raises a ConversionError
naming the node; ``SUPPORTED`` is the list."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx_graphsurgeon as gs
import torch
import torch.nn.functional as F

from ..errors import ConversionError

Inputs = Sequence[torch.Tensor | None]


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _attr_or_input(node: gs.Node, inputs: Inputs, attr: str, index: int) -> list[int] | None:
    """An int list given as an attribute (older opsets) or as input ``index`` (newer ones)."""
    if attr in node.attrs:
        return [int(v) for v in node.attrs[attr]]
    return _ints(inputs[index]) if len(inputs) > index else None


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _spatial_pads(node: gs.Node, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]):
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` for the spatial axes, auto_pad resolved."""
    dims = len(kernel)
    auto = node.attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_begin, pads_end = [], []
        for i in range(dims):
            size = x.shape[2 + i]
            out = math.ceil(size / strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pads_begin.append(small if auto == "SAME_UPPER" else large)
            pads_end.append(large if auto == "SAME_UPPER" else small)
        return pads_begin + pads_end
    if auto == "VALID":
        return [0] * (2 * dims)
    return [int(p) for p in node.attrs.get("pads", [0] * (2 * dims))]


def _pad_spatial(x: torch.Tensor, pads: list[int], value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes by ONNX pads (torch's F.pad lists the last axis first)."""
    dims = len(pads) // 2
    torch_pads = []
    for i in reversed(range(dims)):
        torch_pads += [pads[i], pads[i + dims]]
    return F.pad(x, torch_pads, value=value) if any(torch_pads) else x


def _symmetric(pads: list[int]) -> list[int] | None:
    dims = len(pads) // 2
    return pads[:dims] if pads[:dims] == pads[dims:] else None


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def conv(node, inputs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    dims = w.dim() - 2
    kernel = list(w.shape[2:])
    strides = list(node.attrs.get("strides", [1] * dims))
    dilations = list(node.attrs.get("dilations", [1] * dims))
    pads = _spatial_pads(node, x, kernel, strides, dilations)
    same = _symmetric(pads)
    if same is None:
        x, same = _pad_spatial(x, pads), [0] * dims
    return [_CONV[dims](x, w, b, strides, same, dilations, int(node.attrs.get("group", 1)))]


def conv_transpose(node, inputs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    dims = w.dim() - 2
    if "output_shape" in node.attrs:
        raise ConversionError("ConvTranspose with output_shape is not supported by the torch view", node.name, node.op)
    strides = list(node.attrs.get("strides", [1] * dims))
    dilations = list(node.attrs.get("dilations", [1] * dims))
    out_pad = list(node.attrs.get("output_padding", [0] * dims))
    pads = [int(p) for p in node.attrs.get("pads", [0] * (2 * dims))]
    group = int(node.attrs.get("group", 1))
    y = _CONV_T[dims](x, w, b, strides, 0, out_pad, group, dilations)
    # crop the ONNX pads off each spatial axis (torch's symmetric padding cannot say begin != end)
    index = [slice(None), slice(None)]
    for i in range(dims):
        index.append(slice(pads[i], y.shape[2 + i] - pads[i + dims]))
    return [y[tuple(index)]]


def gemm(node, inputs):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if node.attrs.get("transA", 0):
        a = a.t()
    if node.attrs.get("transB", 0):
        b = b.t()
    y = a @ b
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return [y]


def _pool_window(node, dims):
    kernel = list(node.attrs["kernel_shape"])
    strides = list(node.attrs.get("strides", [1] * dims))
    dilations = list(node.attrs.get("dilations", [1] * dims))
    return kernel, strides, dilations


def average_pool(node, inputs):
    x = inputs[0]
    dims = x.dim() - 2
    kernel, strides, dilations = _pool_window(node, dims)
    if any(d != 1 for d in dilations):
        raise ConversionError("dilated AveragePool is not supported by the torch view", node.name, node.op)
    pads = _spatial_pads(node, x, kernel, strides, dilations)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    include = bool(node.attrs.get("count_include_pad", 0))
    same = _symmetric(pads)
    if same is not None and all(2 * p <= k for p, k in zip(same, kernel)) and not (ceil and any(same)):
        return [_AVG[dims](x, kernel, strides, same, ceil, include)]
    if ceil:
        raise ConversionError("AveragePool with ceil_mode and padding is not supported by the torch view", node.name)
    padded = _pad_spatial(x, pads)
    total = _AVG[dims](padded, kernel, strides, 0, False, True)
    if include:
        return [total]
    ones = _pad_spatial(torch.ones_like(x[:1, :1]), pads)
    share = _AVG[dims](ones, kernel, strides, 0, False, True)
    return [total / share]


def max_pool(node, inputs):
    x = inputs[0]
    dims = x.dim() - 2
    kernel, strides, dilations = _pool_window(node, dims)
    pads = _spatial_pads(node, x, kernel, strides, dilations)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    same = _symmetric(pads)
    if same is None or any(2 * p > k for p, k in zip(same, kernel)):
        x, same = _pad_spatial(x, pads, float("-inf")), [0] * dims
    return [_MAX[dims](x, kernel, strides, same, dilations, ceil)]


def global_average_pool(node, inputs):
    x = inputs[0]
    return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]


def global_max_pool(node, inputs):
    x = inputs[0]
    return [x.amax(dim=tuple(range(2, x.dim())), keepdim=True)]


def _reduce(fn: Callable) -> Callable:
    def run(node, inputs):
        x = inputs[0]
        axes = _attr_or_input(node, inputs, "axes", 1)
        keep = bool(node.attrs.get("keepdims", 1))
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.dim()))
        return [fn(x, dim=tuple(_axis(a, x.dim()) for a in axes), keepdim=keep)]

    return run


def flatten(node, inputs):
    x = inputs[0]
    axis = _axis(int(node.attrs.get("axis", 1)), x.dim())
    outer = int(np.prod(x.shape[:axis])) if axis else 1
    return [x.reshape(outer, -1)]


def reshape(node, inputs):
    x, shape = inputs[0], _ints(inputs[1])
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


def pad(node, inputs):
    x = inputs[0]
    pads = _attr_or_input(node, inputs, "pads", 1)
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    value = float(node.attrs.get("value", 0.0)) if value is None else float(value.reshape(-1)[0])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(x.dim()))
    axes = [_axis(a, x.dim()) for a in axes]
    mode = node.attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    full = [0] * (2 * x.dim())
    for i, a in enumerate(axes):
        full[a], full[a + x.dim()] = pads[i], pads[i + len(axes)]
    torch_pads = []
    for a in reversed(range(x.dim())):
        torch_pads += [full[a], full[a + x.dim()]]
    if mode == "constant":
        return [F.pad(x, torch_pads, value=value)]
    torch_mode = {"reflect": "reflect", "edge": "replicate"}[mode]
    # torch pads only trailing axes in these modes: trim the leading zero pairs
    while torch_pads and torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    return [F.pad(x, torch_pads, mode=torch_mode) if torch_pads else x]


def concat(node, inputs):
    tensors = [t for t in inputs if t is not None]
    dtype = tensors[0].dtype
    return [torch.cat([t.to(dtype) for t in tensors], dim=int(node.attrs["axis"]))]


def split(node, inputs):
    x = inputs[0]
    axis = _axis(int(node.attrs.get("axis", 0)), x.dim())
    sizes = _attr_or_input(node, inputs, "split", 1)
    if not sizes:
        n = int(node.attrs.get("num_outputs", len(node.outputs)))
        chunk = math.ceil(x.shape[axis] / n)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(n)]
    return list(torch.split(x, sizes, dim=axis))


def transpose(node, inputs):
    x = inputs[0]
    perm = node.attrs.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*[int(p) for p in perm])]


def squeeze(node, inputs):
    x = inputs[0]
    axes = _attr_or_input(node, inputs, "axes", 1)
    if axes is None:
        return [x.squeeze()]
    for a in sorted((_axis(a, x.dim()) for a in axes), reverse=True):
        x = x.squeeze(a)
    return [x]


def unsqueeze(node, inputs):
    x = inputs[0]
    axes = _attr_or_input(node, inputs, "axes", 1)
    rank = x.dim() + len(axes)
    for a in sorted(_axis(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return [x]


def slice_(node, inputs):
    x = inputs[0]
    starts, ends = _ints(inputs[1]), _ints(inputs[2])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _axis(axis, x.dim())
        size = x.shape[axis]
        # python's slice clamps exactly as ONNX does, negative steps included
        index = torch.arange(size, device=x.device)[slice(start, end, step)]
        if step == 1:
            x = x.narrow(axis, int(index[0]) if len(index) else 0, len(index))
        else:
            x = x.index_select(axis, index)
    return [x]


def gather(node, inputs):
    x, idx = inputs[0], inputs[1].long()
    axis = _axis(int(node.attrs.get("axis", 0)), x.dim())
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    picked = x.index_select(axis, idx.reshape(-1))
    return [picked.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1 :]))]


def expand(node, inputs):
    x, shape = inputs[0], _ints(inputs[1])
    return [x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape)))]


def tile(node, inputs):
    return [inputs[0].repeat(*_ints(inputs[1]))]


def _nearest_index(out_size: int, in_size: int, scale: float, mode: str, nearest: str, device) -> torch.Tensor:
    """ONNX Resize's source index for every output index of one axis (mode 'nearest')."""
    x = torch.arange(out_size, dtype=torch.float64, device=device)
    if mode == "asymmetric":
        src = x / scale
    elif mode == "half_pixel":
        src = (x + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        src = (x + 0.5) / scale - 0.5 if out_size > 1 else torch.zeros_like(x)
    elif mode == "align_corners":
        src = x * (in_size - 1) / (out_size - 1) if out_size > 1 else torch.zeros_like(x)
    elif mode == "tf_half_pixel_for_nn":
        src = (x + 0.5) / scale
    else:
        raise ValueError(mode)
    if nearest == "floor":
        idx = torch.floor(src)
    elif nearest == "ceil":
        idx = torch.ceil(src)
    elif nearest == "round_prefer_ceil":
        idx = torch.floor(src + 0.5)
    else:  # round_prefer_floor
        idx = torch.ceil(src - 0.5)
    return idx.clamp(0, in_size - 1).long()


def resize(node, inputs):
    x = inputs[0]
    mode = node.attrs.get("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "nearest":
        raise ConversionError(f"Resize mode {mode!r} is not supported by the torch view (nearest is)", node.name)
    if node.op == "Upsample":
        scales = [float(s) for s in (node.attrs.get("scales") or inputs[1].reshape(-1).tolist())]
        sizes = None
        coord, nearest = "asymmetric", "floor"
    else:
        scales_t = inputs[2] if len(inputs) > 2 else None
        sizes_t = inputs[3] if len(inputs) > 3 else None
        scales = (
            [float(s) for s in scales_t.reshape(-1).tolist()] if scales_t is not None and scales_t.numel() else None
        )
        sizes = _ints(sizes_t) if sizes_t is not None and sizes_t.numel() else None
        coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
        coord = coord.decode() if isinstance(coord, bytes) else coord
        nearest = nearest.decode() if isinstance(nearest, bytes) else nearest
    if sizes is None:
        sizes = [int(math.floor(s * f)) for s, f in zip(x.shape, scales)]
    else:
        scales = [o / i for o, i in zip(sizes, x.shape)]
    for axis, (out, size, scale) in enumerate(zip(sizes, x.shape, scales)):
        if out != size or scale != 1.0:
            x = x.index_select(axis, _nearest_index(out, size, scale, coord, nearest, x.device))
    return [x]


def depth_to_space(node, inputs):
    x = inputs[0]
    b = int(node.attrs["blocksize"])
    n, c, h, w = x.shape
    mode = node.attrs.get("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    return [y.reshape(n, c // (b * b), h * b, w * b)]


def space_to_depth(node, inputs):
    x = inputs[0]
    b = int(node.attrs["blocksize"])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return [y.reshape(n, c * b * b, h // b, w // b)]


def shape(node, inputs):
    dims = list(inputs[0].shape)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    dims = dims[start:] if end is None else dims[start : int(end)]
    return [torch.tensor(dims, dtype=torch.int64)]


def _tensor_of(value, device=None) -> torch.Tensor:
    array = np.asarray(value.values if hasattr(value, "values") else value)
    return torch.from_numpy(np.array(array, copy=True))


def constant(node, inputs):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            return [_tensor_of(node.attrs[key])]
    raise ConversionError("Constant without a numeric value", node.name, node.op)


def constant_of_shape(node, inputs):
    value = node.attrs.get("value")
    fill = _tensor_of(value).reshape(-1) if value is not None else torch.zeros(1)
    return [torch.full(_ints(inputs[0]), fill[0].item(), dtype=fill.dtype)]


def cast(node, inputs):
    from onnx import helper

    np_type = helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
    return [inputs[0].to(torch.from_numpy(np.zeros(1, np_type)).dtype)]


def range_(node, inputs):
    start, limit, delta = (t.reshape(()).item() for t in inputs[:3])
    return [torch.arange(start, limit, delta, dtype=inputs[0].dtype)]


def clip(node, inputs):
    x = inputs[0]
    lo = node.attrs.get("min", inputs[1] if len(inputs) > 1 else None)
    hi = node.attrs.get("max", inputs[2] if len(inputs) > 2 else None)
    lo = None if lo is None else (lo.to(x.dtype) if isinstance(lo, torch.Tensor) else torch.tensor(lo, dtype=x.dtype))
    hi = None if hi is None else (hi.to(x.dtype) if isinstance(hi, torch.Tensor) else torch.tensor(hi, dtype=x.dtype))
    return [torch.clamp(x, lo, hi)]


def dequantize_linear(node, inputs):
    """y = (x - zero_point) * scale, per tensor, per axis or per block (opset 21)."""
    x, scale = inputs[0], inputs[1]
    zero = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    centred = x.to(torch.float32) - (zero.to(torch.float32) if zero is not None else 0.0)
    return [centred * broadcast_scale(scale, x, node.attrs.get("axis", 1), node.attrs.get("block_size", 0))]


def broadcast_scale(scale: torch.Tensor, x: torch.Tensor, axis: int, block_size: int = 0) -> torch.Tensor:
    """A DequantizeLinear scale (or zero point) shaped to multiply ``x``."""
    if scale.dim() == 0:
        return scale
    axis = _axis(int(axis), x.dim())
    if block_size:
        scale = scale.repeat_interleave(int(block_size), dim=axis).narrow(axis, 0, x.shape[axis])
        return scale
    return scale.reshape([-1 if i == axis else 1 for i in range(x.dim())])


def batch_normalization(node, inputs):
    """Inference mode: scale * (x - mean) / sqrt(var + epsilon) + bias."""
    if node.attrs.get("training_mode", 0):
        raise ConversionError("BatchNormalization in training mode", node.name, node.op)
    x, scale, bias, mean, var = inputs[:5]
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(node.attrs.get("epsilon", 1e-5)))]


def softmax(node, inputs):
    return [torch.softmax(inputs[0], dim=int(node.attrs.get("axis", -1)))]


def log_softmax(node, inputs):
    return [torch.log_softmax(inputs[0], dim=int(node.attrs.get("axis", -1)))]


def _binary(fn: Callable) -> Callable:
    return lambda node, inputs: [fn(inputs[0], inputs[1])]


def _div(a, b):
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


OPS: dict[str, Callable[[gs.Node, Inputs], list[torch.Tensor]]] = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "Gemm": gemm,
    "MatMul": _binary(torch.matmul),
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _binary(_div),
    "Neg": lambda node, inputs: [-inputs[0]],
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "MaxPool": max_pool,
    "GlobalMaxPool": global_max_pool,
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "Flatten": flatten,
    "Reshape": reshape,
    "Pad": pad,
    "Concat": concat,
    "Split": split,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Slice": slice_,
    "Gather": gather,
    "Expand": expand,
    "Tile": tile,
    "Resize": resize,
    "Upsample": resize,
    "DepthToSpace": depth_to_space,
    "SpaceToDepth": space_to_depth,
    "Identity": lambda node, inputs: [inputs[0]],
    "Dropout": lambda node, inputs: [inputs[0]],
    "Shape": shape,
    "Constant": constant,
    "ConstantOfShape": constant_of_shape,
    "Cast": cast,
    "Range": range_,
    "Relu": lambda node, inputs: [torch.relu(inputs[0])],
    "Clip": clip,
    "DequantizeLinear": dequantize_linear,
    "BatchNormalization": batch_normalization,
    "Softmax": softmax,
    "LogSoftmax": log_softmax,
}
SUPPORTED = sorted(OPS)
