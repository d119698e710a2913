"""Execution forms derived from the step-form artifact.

``split_time_invariant``: under direct encoding the input current is the same every step,
so every node that no membrane reaches computes the same value each step. The artifact is
cut in two: a *prefix* run once per batch (input -> boundary tensors) and a *step* model run
T times (boundary tensors + membranes -> head + next membranes).

``specialize_neuron``: the artifact's IF body reads its reset mode from an attribute; a
session swaps in the shorter body for the one mode the model uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import ModelError
from ..graph import default_opset, export_model, reached_from
from ..neuron import DOMAIN, OP_TYPE, if_function


@dataclass
class SplitModel:
    prefix: onnx.ModelProto | None  # None when nothing before the neurons needs computing
    step: onnx.ModelProto
    boundary: list[str]  # tensors the prefix computes (or graph inputs) that the step model reads
    constant_outputs: list[str]  # requested outputs that no neuron reaches: computed once by the prefix


def specialize_neuron(model: onnx.ModelProto) -> onnx.ModelProto:
    modes = {
        next((a.i for a in n.attribute if a.name == "reset_to_zero"), 0)
        for n in model.graph.node
        if n.domain == DOMAIN and n.op_type == OP_TYPE
    }
    if len(modes) != 1:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    others = [f for f in out.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del out.functions[:]
    out.functions.append(if_function(default_opset(model), "zero" if modes.pop() else "subtract"))
    out.functions.extend(others)
    return out


def drop_outputs(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of ``model`` without the graph outputs ``names`` (e.g. the constant initial
    membranes, which a session reads once rather than every step)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [o for o in out.graph.output if o.name not in names]
    del out.graph.output[:]
    out.graph.output.extend(kept)
    return out


def split_time_invariant(model: onnx.ModelProto, varying: list[str], outputs: list[str]) -> SplitModel:
    """Cut ``model`` into a prefix (what no tensor of ``varying`` reaches) and a step model
    computing ``outputs`` (plus every graph output). ``varying``: the membranes, and the data
    input too when it changes every step (Poisson encoding)."""
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    missing = [n for n in outputs if n not in tensors]
    if missing:
        raise ModelError(f"no tensor named {', '.join(map(repr, missing))} in the model")
    reached = reached_from(graph, varying)
    wanted = list(dict.fromkeys([t.name for t in graph.outputs] + list(outputs)))
    step_outputs = [n for n in wanted if n in reached]
    constant = [n for n in wanted if n not in reached]

    boundary: list[str] = []
    for node in graph.nodes:
        if not any(t.name in reached for t in node.outputs):
            continue
        for t in node.inputs:
            if isinstance(t, gs.Variable) and t.name and t.name not in reached and t.name not in boundary:
                boundary.append(t.name)
    for name in boundary + constant:
        tensors[name].dtype = tensors[name].dtype or np.float32

    input_names = [t.name for t in graph.inputs if t.name not in varying]
    computed = [n for n in dict.fromkeys(boundary + constant) if n not in input_names]
    prefix = None
    if computed:
        pg = graph.copy()
        pt = pg.tensors()
        pg.outputs = [pt[n] for n in computed]
        pg.inputs = [pt[n] for n in input_names]
        pg.functions = []
        prefix = export_model(pg.cleanup(remove_unused_graph_inputs=True), model.opset_import)

    sg = graph.copy()
    st = sg.tensors()
    for name in boundary:
        if name not in input_names:
            st[name].inputs.clear()  # now fed from outside, by the prefix
    sg.inputs = [st[n] for n in boundary] + [st[n] for n in varying if n in st and n not in boundary]
    sg.outputs = [st[n] for n in step_outputs]
    step = export_model(sg.cleanup().toposort(mode="nodes"), model.opset_import)
    return SplitModel(prefix, step, boundary, constant)
