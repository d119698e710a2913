"""Stage boundaries in onnxruntime's blocked channel layout, for the compiled neurons.

On CPU onnxruntime runs convolutions and pooling in a blocked layout (NCHWc: channels in
blocks of 8 or 16, the block innermost) and converts at a graph's edges: a ``ReorderInput``
where a plain [N, C, H, W] tensor comes in, a ``ReorderOutput`` where one goes out. A
network cut open at its neurons has such edges at every IF layer, and the conversions cost
as much as a sixth of a step. The compiled kernel's arithmetic is elementwise, so it can run
on the blocked tensors themselves: each stage is optimized once, the conversions at its
neuron edges (and at the tensors stages pass to each other, such as a shortcut's
convolution) are taken out, a residual Add of two blocked tensors adds them as they are (or
the convolution before it adds it, fuse_sums), and the currents and spikes stay blocked
([N, C', H, W] with C' the channels rounded up to the block, laid out [N, C'/b, H, W, b]).
Values are those of the plain stages, bit for bit (but for a residual Add fused into its
convolution: to float rounding, see fuse_sums); only the order in memory differs. A layer
whose spikes feed a dense layer, a concatenation or anything read from outside stays plain.

The blocked form is onnxruntime's own (its ``com.microsoft.nchwc`` operators) and depends on
the processor, so it is made where the session runs and never stored."""

from __future__ import annotations

import functools
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

NCHWC = "com.microsoft.nchwc"


def _reorders(tensors: dict[str, tuple]) -> onnx.ModelProto:
    """A model of one ReorderInput (plain -> blocked) per tensor: name -> (its input's dims, its
    output's dims), the output named ``name + "/blocked"``."""
    nodes, inputs, outputs = [], [], []
    for name, (dims, blocked_dims) in tensors.items():
        nodes.append(helper.make_node("ReorderInput", [name], [name + "/blocked"], domain=NCHWC, channels_last=0))
        inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
        outputs.append(helper.make_tensor_value_info(name + "/blocked", onnx.TensorProto.FLOAT, blocked_dims))
    graph = helper.make_graph(nodes, "reorder", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(NCHWC, 1)])
    model.ir_version = 8  # what every onnxruntime release since 1.15 reads
    return model


@functools.cache
def block_size() -> int | None:
    """onnxruntime's channel block on this processor (8 or 16), or None where it has none."""
    model = _reorders({"x": ([1, 4, 1, 1], None)})
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": np.ones((1, 4, 1, 1), np.float32)})  # 4 channels, padded to a block
    except Exception:  # an onnxruntime build without the blocked operators
        return None
    return int(y.shape[1]) if y.ndim == 4 and y.shape[1] > 1 else None


def padded(channels: int, block: int) -> int:
    return -(-channels // block) * block


def to_blocked(a: np.ndarray, block: int) -> np.ndarray:
    """[N, C, H, W] -> [N, C', H, W] in the blocked layout, the padding channels zero."""
    n, c, *rest = a.shape
    cp = padded(c, block)
    full = np.zeros((n, cp, *rest), np.float32)
    full[:, :c] = a
    return np.ascontiguousarray(np.moveaxis(full.reshape(n, cp // block, block, *rest), 2, -1)).reshape(n, cp, *rest)


def from_blocked(a: np.ndarray, channels: int, block: int) -> np.ndarray:
    """The plain [N, C, H, W] values of a blocked tensor."""
    n, cp, *rest = a.shape
    plain = np.moveaxis(a.reshape(n, cp // block, *rest, block), -1, 2).reshape(n, cp, *rest)
    return np.ascontiguousarray(plain[:, :channels])


def reorder_model(tensors: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A model that converts each of ``tensors`` (name -> plain per-sample shape [C, H, W], C a
    multiple of 4) into the blocked layout, as ``name + "/blocked"``."""
    block = block_size() or 1
    return _reorders(
        {name: (["batch", c, *rest], ["batch", padded(c, block), *rest]) for name, (c, *rest) in tensors.items()}
    )


def sample_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes (past the batch axis) of the tensors of ``model`` that shape inference
    knows whole."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model shape inference cannot follow: nothing known
        return {}
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims) >= 2 and all(d.HasField("dim_value") for d in dims[1:]):
            shapes[v.name] = tuple(d.dim_value for d in dims[1:])
    return shapes


def optimized(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as onnxruntime's CPU provider optimizes it, blocked layout included."""
    with tempfile.TemporaryDirectory(prefix="onnx2snn-") as folder:
        path = os.path.join(folder, "optimized.onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.optimized_model_filepath = path
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(path)


def _plain(node: onnx.NodeProto) -> bool:
    """A conversion between the plain NCHW layout and the blocked one (not channels-last)."""
    return node.domain == NCHWC and all(a.i == 0 for a in node.attribute if a.name == "channels_last")


def _unread_conversions(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` without the conversions to the plain layout whose results nothing reads."""
    while True:
        read = {x for n in nodes for x in n.input} | outputs
        kept = [n for n in nodes if not (n.op_type == "ReorderOutput" and _plain(n) and n.output[0] not in read)]
        if len(kept) == len(nodes):
            return nodes
        nodes = kept


def unblock(
    model: onnx.ModelProto,
    inputs: set[str],
    outputs: set[str],
    shapes: dict[str, tuple[int, ...]],
    block: int,
) -> tuple[onnx.ModelProto | None, set[str]]:
    """``model`` (as ``optimized`` made it) with the tensors ``inputs`` coming in and ``outputs``
    going out blocked, or None and those of them that cannot (a node reads such an input in
    the plain layout; no blocked form of such an output is computed, or something in the stage
    reads its plain form). ``shapes``: plain per-sample shapes ([C, H, W]) of those tensors and
    of what else is known. The conversions at those
    edges go; a plain Add of two tensors that are at hand blocked becomes an Add of the blocked
    tensors (elementwise, so the layout changes none of its values), its plain result
    converted back only where something still reads it."""
    graph = model.graph
    graph_outputs = {t.name for t in graph.output}
    blocked_of = {name: name for name in inputs}  # plain tensor -> the tensor holding it blocked
    channels_of = {name: shapes[name][0] for name in inputs}
    for node in graph.node:
        if node.op_type == "ReorderOutput" and _plain(node):
            blocked_of[node.output[0]] = node.input[0]
            channels_of[node.output[0]] = next((a.i for a in node.attribute if a.name == "channels"), -1)
    nodes: list[onnx.NodeProto] = []
    made: list[onnx.NodeProto] = []  # the blocked Adds: they read the blocked inputs as such
    rename: dict[str, str] = {}
    plain_readers: list[onnx.NodeProto] = []  # nodes reading a tensor of ``inputs`` as plain
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if node.op_type == "ReorderInput" and _plain(node) and node.input[0] in inputs:
            rename[node.output[0]] = node.input[0]
            continue
        pair = list(node.input)
        if any(x in inputs for x in pair):
            plain_readers.append(node)
        node.input[:] = [rename.get(x, x) for x in node.input]
        if (
            node.op_type == "Add"
            and node.domain == ""
            and len(pair) == 2
            and all(x in blocked_of for x in pair)
            and channels_of[pair[0]] == channels_of[pair[1]] > 0
            and shapes.get(pair[0]) is not None
            and shapes.get(pair[0]) == shapes.get(pair[1])  # no broadcasting: it would not see the blocks
        ):
            out = node.output[0]
            add = helper.make_node("Add", [blocked_of[x] for x in pair], [out + "/blocked"], name=node.name)
            made.append(add)
            nodes.append(add)
            blocked_of[out], channels_of[out] = add.output[0], channels_of[pair[0]]
            nodes.append(
                helper.make_node(
                    "ReorderOutput", add.output, [out], domain=NCHWC, channels=channels_of[out], channels_last=0
                )
            )
            continue
        nodes.append(node)
    nodes = _unread_conversions(nodes, graph_outputs)
    kept = {id(n) for n in nodes}
    failed = {x for x in inputs if any(x in n.input for n in plain_readers if id(n) in kept)}
    for name in outputs:
        if name not in blocked_of or name in inputs or any(name in n.input for n in nodes):
            failed.add(name)
    if failed:
        return None, failed
    final = {blocked_of[name]: name for name in outputs}
    nodes = [n for n in nodes if not (n.op_type == "ReorderOutput" and n.output[0] in outputs)]
    for node in nodes:
        node.input[:] = [final.get(x, x) for x in node.input]
        node.output[:] = [final.get(x, x) for x in node.output]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    names = inputs | outputs
    infos = [v for v in out.graph.value_info if v.name not in names]
    del out.graph.value_info[:]
    out.graph.value_info.extend(infos)
    for t in list(out.graph.input) + list(out.graph.output):
        if t.name in names:
            c, *rest = shapes[t.name]
            dims = ["batch", padded(c, block), *rest]
            t.CopyFrom(helper.make_tensor_value_info(t.name, onnx.TensorProto.FLOAT, dims))
    return out, set()


def fuse_sums(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (as ``unblock`` made it) with each blocked Add of a convolution's result (read by
    nothing else, no activation fused into it) and another blocked tensor done by that
    convolution itself, through its ``Sum`` input, in the Add's place: one pass over the output
    instead of two (with tiles, the ResNet's step 10.85 -> 10.35 ms on one core; at batch 64 one
    step a call it had not paid). onnxruntime's convolution adds the sum before its bias, so such
    a current can differ from the separate Add's by an ulp (float rounding, as onnxruntime's own
    fusion of such an Add in a whole model rounds it): a membrane within an ulp of its threshold
    may fire a step apart."""
    graph = model.graph
    outputs = {t.name for t in graph.output}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for x in n.input:
            readers[x] = readers.get(x, 0) + 1
    fused: dict[int, onnx.NodeProto] = {}  # id of an Add -> the convolution that takes its place
    moved: set[int] = set()  # ids of those convolutions
    dropped: set[str] = set()  # the convolutions' former outputs
    for add in graph.node:
        if add.op_type != "Add" or add.domain != "" or len(add.input) != 2:
            continue
        for i, x in enumerate(add.input):
            conv = producer.get(x)
            if (
                conv is None
                or conv.op_type != "Conv"
                or conv.domain != NCHWC
                or len(conv.input) > 3
                or readers.get(x) != 1
                or x in outputs
                or any(a.name == "activation" for a in conv.attribute)
            ):
                continue
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input.append(add.input[1 - i])
            dropped.add(conv.output[0])
            conv.output[0] = add.output[0]
            fused[id(add)], moved = conv, moved | {id(conv)}
            break
    nodes = [fused.get(id(n), n) for n in graph.node if id(n) not in moved]  # each where its Add was: in order
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    infos = [v for v in out.graph.value_info if v.name not in dropped]
    del out.graph.value_info[:]
    out.graph.value_info.extend(infos)
    return out
