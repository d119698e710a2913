"""Expand every IF node into standard operators, for runtimes that do not expand model-local
functions (OpenVINO, onnx2torch, ...):

    IF(x, membrane, threshold) -> (spikes, membrane_next)
      =  v = membrane + x;  fired = Cast(Not(v < threshold));  spikes = fired * threshold;
         membrane_next = v - spikes   (or v - v * fired with reset_to_zero=1)

the body of ``neuron.inline_nodes`` for the node's reset mode: the same arithmetic as the
function, in operators every runtime has. Each node's tensors and nodes are named after it
(``<node>.v``, ``<node>.fired``, ...); its outputs keep their names."""

from __future__ import annotations

import onnx_graphsurgeon as gs
from onnx import numpy_helper

from ..neuron import DOMAIN, OP_TYPE, inline_nodes

FORMALS = ("x", "membrane", "threshold", "spikes", "membrane_next")


def inline_neurons(graph: gs.Graph) -> gs.Graph:
    for node in [n for n in graph.nodes if n.op == OP_TYPE and n.domain == DOMAIN]:
        reset = "zero" if int(node.attrs.get("reset_to_zero", 0)) else "subtract"
        tensors = dict(zip(FORMALS, list(node.inputs) + list(node.outputs)))
        body = inline_nodes(reset)
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
    graph.functions = [f for f in graph.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    return graph.cleanup().toposort(mode="nodes")


def _attribute(attribute):
    from onnx import helper

    value = helper.get_attribute_value(attribute)
    return numpy_helper.to_array(value) if hasattr(value, "dims") else value
