"""A trailing classifier head moves out of the time loop.

Exporters write classifiers with more than scores: skl2onnx's ``MLPClassifier`` gives
``probabilities = Softmax(z)`` and ``label = Cast(Reshape(ArrayFeatureExtractor(classes,
ArgMax(probabilities))))``. None of that is linear, but all of it depends on the last linear
layer's output ``z`` alone, so it is applied after decoding, like a trailing softmax:

    outputs_t = head(mean_{s <= t} z_s)

The head is the largest set of nodes of ``HEAD_OPS`` whose every result feeds only other head
nodes or graph outputs; the tensors it reads from the network proper (``z``, float) become the
graph's outputs, and the head itself a small ONNX model from ``<z>.decoded`` to the ANN's
outputs that the artifact carries (``head_model``). A head of one Softmax/LogSoftmax per
output is left to ``strip_output_activation``."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..checks import DECODED  # the head reads the decoded mean of each of its inputs under this suffix
from ..errors import ConversionError
from ..graph import export_model, is_constant

HEAD_OPS = {
    "Softmax", "LogSoftmax", "ArgMax", "ArgMin", "ArrayFeatureExtractor", "Cast", "Reshape", "Identity",
    "Squeeze", "Unsqueeze", "Flatten", "Shape", "Gather", "Concat",
}  # fmt: skip
ACTIVATIONS_ONLY = {"Softmax", "LogSoftmax"}


# linear or shape-only: where one starts the head (reads only the network), it stays in the network
STAYS = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Gather", "Shape"}


def head_nodes(graph: gs.Graph) -> list[gs.Node]:
    """The trailing head: nodes of HEAD_OPS whose results feed only head nodes or outputs, less
    those at its start that spikes pass anyway (STAYS: a Flatten after the last pooling)."""
    outputs = {t.name for t in graph.outputs}
    head = {id(n): n for n in graph.nodes if n.op in HEAD_OPS}
    changed = True
    while changed:
        changed = False
        for key, node in list(head.items()):
            feeds_only_head = all(all(id(c) in head for c in t.outputs) for t in node.outputs)
            reaches_output = any(t.name in outputs or t.outputs for t in node.outputs)
            if not feeds_only_head or not reaches_output:
                del head[key]
                changed = True
    changed = True
    while changed:
        changed = False
        for key, node in list(head.items()):
            from_network = all(not t.inputs or id(t.inputs[0]) not in head for t in node.inputs)
            if node.op in STAYS and from_network:
                del head[key]
                changed = True
    return [n for n in graph.nodes if id(n) in head]


def _decoded_inputs(graph: gs.Graph, nodes: list[gs.Node]) -> list[gs.Tensor]:
    made = {id(t) for n in nodes for t in n.outputs}
    found: dict[str, gs.Tensor] = {}
    for node in nodes:
        for t in node.inputs:
            if t.name and id(t) not in made and not is_constant(t):
                found.setdefault(t.name, t)
    return list(found.values())


def output_head(graph: gs.Graph) -> tuple[list[gs.Node], list[gs.Tensor]]:
    """(head nodes, the tensors they read from the network) or ([], []) where there is no head
    beyond plain trailing activations."""
    nodes = head_nodes(graph)
    if not nodes:
        return [], []
    inputs = _decoded_inputs(graph, nodes)
    graph_inputs = {t.name for t in graph.inputs}
    if all(n.op in ACTIVATIONS_ONLY and n.outputs[0] in graph.outputs for n in nodes):
        return [], []
    for t in inputs:
        if t.name in graph_inputs or (t.dtype is not None and np.dtype(t.dtype) != np.float32):
            producer = t.inputs[0].name if t.inputs else t.name
            raise ConversionError(
                f"the output head reads '{t.name}', which is not a float tensor of the network", producer
            )
    return nodes, inputs


def move_output_head(
    graph: gs.Graph, opset_imports: list[onnx.OperatorSetIdProto]
) -> tuple[gs.Graph, onnx.ModelProto | None]:
    """``graph`` without its trailing head (its outputs: the tensors the head read, then the
    ANN's outputs the head did not make), and the head as a model from ``<z>.decoded`` to the
    ANN's outputs it made (None where there is none)."""
    nodes, inputs = output_head(graph)
    if not nodes:
        return graph, None
    made = {id(t) for n in nodes for t in n.outputs}
    kept = [t for t in graph.outputs if id(t) not in made]
    # the head as a model of its own, cut from the exported graph (names are unique there)
    whole = export_model(graph.copy(), opset_imports)
    names = {n.name for n in nodes}
    reads = {t.name: t.name + DECODED for t in inputs}
    head_nodes_ = [n for n in whole.graph.node if n.name in names]
    for node in head_nodes_:
        node.input[:] = [reads.get(t, t) for t in node.input]
    used = {t for n in head_nodes_ for t in n.input}
    produced = {id(t) for n in nodes for t in n.outputs}
    values = {v.name: v for v in list(whole.graph.value_info) + list(whole.graph.output)}
    head_graph = onnx.helper.make_graph(
        head_nodes_,
        "output_head",
        [onnx.helper.make_tensor_value_info(reads[t.name], onnx.TensorProto.FLOAT, t.shape) for t in inputs],
        [values[t.name] for t in graph.outputs if id(t) in produced],
        initializer=[i for i in whole.graph.initializer if i.name in used],
    )
    model = onnx.helper.make_model(head_graph, opset_imports=opset_imports, ir_version=whole.ir_version)
    for node in nodes:
        node.outputs.clear()
        node.inputs.clear()
    graph.outputs = [t for t in inputs if t not in kept] + kept
    for t in graph.outputs:
        t.dtype = t.dtype or np.float32
    return graph.cleanup().toposort(), model
