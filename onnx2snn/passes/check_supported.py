"""Check that every node converts: a spike train passes a node correctly only if the node is
linear in its time-varying inputs (then the mean over steps commutes with it), or is an
activation the converter turns into neurons. Anything else is refused by name. It runs on the
canonical graph (after BatchNorm folding, constant folding, ...) and before any spiking
rewrite: never a silent half-conversion."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import ConversionError
from ..graph import constant_value, is_constant
from .quantized_weights import integer_weight

# linear in their (single or summed) data inputs; attributes and shape inputs are constant
LINEAR = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Neg", "AveragePool", "GlobalAveragePool",
    "ReduceMean", "ReduceSum", "Flatten", "Reshape", "Pad", "Concat", "Split", "Transpose", "Squeeze",
    "Unsqueeze", "Slice", "Gather", "Expand", "Tile", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth",
    "Identity",
}  # fmt: skip
# converted by their own rule (maxpool_to_spiking.py) where spikes reach them
POOLS = {"MaxPool", "GlobalMaxPool"}
# shape arithmetic that exporters emit (e.g. x.view(x.size(0), -1)): no data flows through it
SHAPE_OPS = {"Shape", "Gather", "Constant", "ConstantOfShape", "Cast", "Range"}
ACTIVATIONS = {"Relu", "Clip"}
WHY = {
    "Sigmoid": "a sigmoid between layers has no rate-coded IF equivalent",
    "Tanh": "tanh between layers has no rate-coded IF equivalent (negative outputs)",
    "Gelu": "GELU between layers has no rate-coded IF equivalent",
    "HardSwish": "hard-swish is a product of two activations",
    "HardSigmoid": "hard-sigmoid between layers has no rate-coded IF equivalent",
    "LeakyRelu": "leaky ReLU has negative outputs that IF neurons cannot spike",
    "PRelu": "PReLU has negative outputs that IF neurons cannot spike",
    "Softmax": "a softmax is only supported as the model's last node",
    "LogSoftmax": "a log-softmax is only supported as the model's last node",
    "BatchNormalization": "BatchNormalization should have been folded",
    "ArgMax": "an arg-max between layers cannot be rate-coded (one at the output is applied after decoding)",
    "ReduceMax": "a max over spikes needs the accumulated-input rule; only MaxPool has it",
    "Mod": "not linear",
    "Abs": "not linear (negative currents would spike)",
}
CONTROL_FLOW = {"If", "Loop", "Scan"}
STANDARD_DOMAINS = (None, "", "ai.onnx")  # onnx-graphsurgeon gives the standard operators domain None
# integer arithmetic on quantized activations: a spike train's step values are not its rate
_INTEGER_OPS = "quantizes activations (integer arithmetic on them); only weight quantization converts"
for _op in (
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QGemm",
    "QAttention",
):
    WHY[_op] = _INTEGER_OPS
WHY["MatMulNBits"] = "onnxruntime's fused n-bit MatMul; write its weights as DequantizeLinear + MatMul instead"


def _clip_bounds(node: gs.Node) -> tuple[float | None, float | None]:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11
        return node.attrs.get("min"), node.attrs.get("max")
    bounds = []
    for i in (1, 2):
        t = node.inputs[i] if len(node.inputs) > i else None
        if t is None or (isinstance(t, gs.Variable) and not t.name):
            bounds.append(None)
        elif is_constant(t) and np.size(constant_value(t)) == 1:
            bounds.append(float(np.asarray(constant_value(t)).reshape(())))
        else:
            raise ConversionError("Clip bounds must be scalar constants", node.name, node.op)
    return bounds[0], bounds[1]


def clip_max(node: gs.Node) -> float | None:
    """The upper bound of a ReLU-like Clip(0, m), or None for no upper bound."""
    return _clip_bounds(node)[1]


def _check_quantization(node: gs.Node) -> None:
    """DequantizeLinear of integer constants makes weights (kept integer); anything else
    quantizes activations, which a spike train cannot honour."""
    if node.op == "DequantizeLinear" and integer_weight(node.outputs[0]) is not None:
        return
    if node.op == "QuantizeLinear" and is_constant(node.inputs[0]):
        raise ConversionError("a weight's QuantizeLinear could not be folded into integers", node.name, node.op)
    raise ConversionError(
        "quantizes an activation (QuantizeLinear/DequantizeLinear of a tensor that depends on the input): "
        "rate-coded spikes cannot honour activation quantization; only weight quantization converts",
        node.name,
        node.op,
    )


def _check_node(node: gs.Node) -> None:
    op = node.op
    if op in WHY:
        raise ConversionError(WHY[op], node.name, op)
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return _check_quantization(node)
    if op == "Clip":
        lo, hi = _clip_bounds(node)
        if lo != 0.0:
            raise ConversionError(f"only Clip(min=0, max=m) converts to IF neurons (min is {lo})", node.name, op)
        if hi is not None and hi <= 0:
            raise ConversionError(f"Clip max must be positive (got {hi})", node.name, op)
        return
    if op in ("Mul", "Div"):
        scale = node.inputs[1] if op == "Div" else next((t for t in node.inputs if is_constant(t)), None)
        if scale is None or not is_constant(scale):
            what = "divisor" if op == "Div" else "factor"
            raise ConversionError(
                f"{op} of two activations is not linear in time (the {what} must be a constant)", node.name, op
            )
        return
    if op in POOLS:
        if op == "MaxPool" and len(node.outputs) > 1 and node.outputs[1].outputs:
            raise ConversionError("MaxPool indices are not supported on spikes", node.name, op)
        return
    if op in LINEAR or op in SHAPE_OPS or op in ACTIVATIONS:
        if op == "Pad" and node.attrs.get("mode", "constant") not in ("constant", "reflect", "edge"):
            raise ConversionError(f"Pad mode {node.attrs.get('mode')!r} is not supported", node.name, op)
        return
    if node.domain not in STANDARD_DOMAINS:
        raise ConversionError(f"custom op from domain '{node.domain}' is not supported", node.name, op)
    if op in CONTROL_FLOW:
        raise ConversionError(
            "control flow is not supported (a condition or trip count that depends on the data cannot be "
            "rate-coded; constant ones are folded away)",
            node.name,
            op,
        )
    raise ConversionError("operator not supported between spiking layers", node.name, op)


def _check_dtypes(graph: gs.Graph) -> None:
    """The data input and every activation are float32: the neurons' membranes are."""
    for t in graph.inputs:
        if t.dtype is not None and np.dtype(t.dtype) != np.float32:
            raise ConversionError(
                f"input '{t.name}' is {np.dtype(t.dtype).name}: onnx2snn converts float32 models "
                "(convert the weights and input to float32 first)"
            )
    for node in graph.nodes:
        if node.op in ACTIVATIONS and node.outputs and node.outputs[0].dtype is not None:
            dtype = np.dtype(node.outputs[0].dtype)
            if dtype != np.float32:
                raise ConversionError(
                    f"the activation is {dtype.name}: IF neurons hold float32 membranes", node.name, node.op
                )


def find_unsupported(graph: gs.Graph) -> list[ConversionError]:
    """Every node that cannot convert, each as the ConversionError that names it."""
    problems = []
    for node in graph.nodes:
        try:
            _check_node(node)
        except ConversionError as e:
            problems.append(e)
    return problems


def check_supported(graph: gs.Graph) -> gs.Graph:
    """The graph unchanged, or a ConversionError naming the first unsupported node (every one
    in ``problems``)."""
    problems = find_unsupported(graph)
    if problems:
        more = len(problems) - 1
        others = ", ".join(f"'{p.node}' ({p.op_type})" for p in problems[1:4]) + (", ..." if more > 3 else "")
        error = ConversionError(f"{problems[0]}" + (f" (and {more} more unsupported: {others})" if more else ""))
        error.node, error.op_type = problems[0].node, problems[0].op_type
        error.problems = problems
        raise error
    _check_dtypes(graph)
    if not any(node.op in ACTIVATIONS for node in graph.nodes):
        raise ConversionError("the model has no Relu or Clip(0, m) activation: nothing to convert to neurons")
    if not graph.inputs:
        raise ConversionError("the model has no data input")
    return graph
