"""Expand every neuron node into standard operators, for runtimes that do not expand
model-local functions (OpenVINO, onnx2torch, ...):

    IF(x, membrane, threshold) -> (spikes, membrane_next)
      =  v = membrane + x;  fired = Cast(Not(v < threshold));  spikes = fired * threshold;
         membrane_next = v - spikes   (or v - v * fired with reset_to_zero=1)

the body of ``neuron.inline_nodes`` for the node's reset mode: the same arithmetic as the
function, in operators every runtime has. A MultiSpikeIF, LIF or CubaLIF node (neurons.py)
becomes its function's own body, each attribute it reads a constant of the node's value (or the
default; as a float, so that no integer tensor crosses between the runtime's stages). Each
node's tensors and nodes are named after it (``<node>.v``, ``<node>.fired``,
...); its outputs keep their names."""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper

from ..neuron import DOMAIN, OP_TYPE, inline_nodes
from ..neurons import DEFAULTS, SIGNATURES, body_nodes

FORMALS = ("x", "membrane", "threshold", "spikes", "membrane_next")


def _body(node: gs.Node) -> tuple[tuple[str, ...], list[onnx.NodeProto]]:
    """The formal inputs and outputs of ``node``'s neuron, and its body in standard operators."""
    if node.op == OP_TYPE:
        return FORMALS, inline_nodes("zero" if int(node.attrs.get("reset_to_zero", 0)) else "subtract")
    inputs, outputs = SIGNATURES[node.op]
    attrs = {**DEFAULTS[node.op], **node.attrs}
    body = []
    for proto in body_nodes(node.op):
        refs = [a for a in proto.attribute if a.ref_attr_name]
        if refs:  # Constant(the node's attribute): its value, as a float (the body casts it to v's type)
            value = float(attrs[refs[0].ref_attr_name])
            proto = helper.make_node("Constant", [], list(proto.output), value_float=value)
        body.append(proto)
    return (*inputs, *outputs), body


def inline_neurons(graph: gs.Graph) -> gs.Graph:
    neurons = {OP_TYPE, *SIGNATURES}
    for node in [n for n in graph.nodes if n.op in neurons and n.domain == DOMAIN]:
        formals, body = _body(node)
        tensors = dict(zip(formals, list(node.inputs) + list(node.outputs)))
        node.inputs.clear()
        node.outputs.clear()
        for proto in body:
            for name in list(proto.input) + list(proto.output):
                if name not in tensors:
                    tensors[name] = gs.Variable(f"{node.name}.{name}")  # types left to inference
            attrs = {a.name: _attribute(a) for a in proto.attribute}
            graph.nodes.append(
                gs.Node(
                    proto.op_type,
                    f"{node.name}.{proto.output[0]}",
                    attrs,
                    [tensors[t] for t in proto.input],
                    [tensors[t] for t in proto.output],
                )
            )
    graph.functions = [f for f in graph.functions if not (f.domain == DOMAIN and f.name in neurons)]
    return graph.cleanup().toposort(mode="nodes")


def _attribute(attribute):
    value = helper.get_attribute_value(attribute)
    return numpy_helper.to_array(value) if hasattr(value, "dims") else value
