"""The inverse rewrite: the ANN an SNN artifact approximates, read from the artifact's
metadata alone (the names it records, see artifact.py):

    IF(x, membrane, threshold)                 -> Relu(x)  (or the Clip(x, 0, m) it replaced)
    Add(x, current_shift) before a neuron      -> x        (corrections are no part of the ANN)
    MaxPool(accumulated + x) - pooled          -> MaxPool(x)
    the mean of the head, then Softmax         -> Softmax of the head (the trailing activation back)

States, thresholds, corrections, the IF function and the metadata go."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..artifact import SNNModel
from ..errors import ModelError
from ..graph import export_model, replace_uses
from ..neuron import DOMAIN
from .move_output_head import DECODED


def _restore_pools(graph: gs.Graph, snn: SNNModel, nodes: dict[str, gs.Node]) -> None:
    for pool in snn.pools:
        accumulate, maxpool, difference = nodes[pool["accumulate"]], nodes[pool["node"]], nodes[pool["difference"]]
        x, y = accumulate.inputs[1], difference.outputs[0]
        accumulate.outputs.clear()
        difference.outputs.clear()
        maxpool.inputs = [x]
        maxpool.outputs = [y]


def _restore_activations(graph: gs.Graph, snn: SNNModel, nodes: dict[str, gs.Node]) -> None:
    for layer in snn.layers:
        if layer.get("current_correction"):
            if layer["current_correction"] not in nodes:
                raise ModelError(
                    f"{snn.source or 'model'}: the bias correction of '{layer['node']}' was folded into the layer "
                    "before it (by a simplifier): the ANN cannot be rebuilt from this file; use the artifact as "
                    "converted"
                )
            add = nodes[layer["current_correction"]]
            replace_uses(graph, add.outputs[0], add.inputs[0])
            add.outputs.clear()
        node = nodes[layer["node"]]
        inputs = [node.inputs[0]]
        if layer["op"] == "Clip":
            inputs.append(gs.Constant(f"{node.name}.clip_min", np.array(0, np.float32)))
            if layer.get("clip_max") is not None:
                inputs.append(gs.Constant(f"{node.name}.clip_max", np.array(layer["clip_max"], np.float32)))
        node.op, node.domain, node.attrs = layer["op"], None, {}
        node.inputs = inputs
        node.outputs = node.outputs[:1]


def _restore_output_activations(graph: gs.Graph, snn: SNNModel) -> None:
    tensors = graph.tensors()
    for name, act in snn.metadata.get("output_activations", {}).items():
        out = tensors[name]
        pre = gs.Variable(f"{name}.pre_activation", dtype=out.dtype, shape=out.shape)
        producer = out.inputs[0]
        producer.outputs = [pre if t is out else t for t in producer.outputs]
        graph.nodes.append(gs.Node(act["op"], f"{name}.activation", {"axis": act["axis"]}, [pre], [out]))


def snn_to_ann(snn: SNNModel) -> onnx.ModelProto:
    snn.require_neurons("rebuilding the ANN")
    graph = gs.import_onnx(snn.proto)
    nodes = {n.name: n for n in graph.nodes}
    states = {layer[k] for layer in snn.layers for k in ("membrane", "membrane_next")}
    states |= {pool[k] for pool in snn.pools for k in ("accumulated", "accumulated_next", "pooled", "pooled_next")}
    states |= {layer["membrane_init"] for layer in snn.layers if layer.get("membrane_init")}
    _restore_pools(graph, snn, nodes)
    _restore_activations(graph, snn, nodes)
    graph.inputs = [t for t in graph.inputs if t.name not in states]
    graph.outputs = [t for t in graph.outputs if t.name not in states]
    _restore_output_activations(graph, snn)
    graph.functions = []
    graph.cleanup().toposort()
    model = export_model(graph, [imp for imp in snn.proto.opset_import if imp.domain != DOMAIN])
    if snn.head:
        model = _restore_head(model, snn)
    model.producer_name = snn.proto.producer_name
    return model


def _restore_head(model: onnx.ModelProto, snn: SNNModel) -> onnx.ModelProto:
    """The trailing head back on the outputs it read, which stay outputs only where the ANN had them."""
    head = snn.head_model()
    reads = {name: name[: -len(DECODED)] for name in snn.head["inputs"]}
    for node in head.graph.node:
        node.input[:] = [reads.get(t, t) for t in node.input]
    graph = model.graph
    graph.node.extend(head.graph.node)
    graph.initializer.extend(head.graph.initializer)
    order = snn.head.get("ann_outputs") or [o.name for o in graph.output] + snn.head["outputs"]
    values = {o.name: o for o in list(graph.output) + list(head.graph.output)}
    kept = [values[name] for name in order if name in values]
    del graph.output[:]
    graph.output.extend(kept)
    have = {i.domain for i in model.opset_import}
    model.opset_import.extend(i for i in head.opset_import if i.domain not in have and i.domain not in ("", "ai.onnx"))
    sorted_graph = gs.import_onnx(model)
    return export_model(sorted_graph.cleanup().toposort(), list(model.opset_import))
