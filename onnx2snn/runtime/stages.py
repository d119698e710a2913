"""Cutting a graph open at its IF layers into stages that onnxruntime runs between them.

The IF nodes are taken out: each one's input current leaves the graph and its spikes come in
from outside (from the compiled kernel). A stage holds every node whose inputs are ready at one
depth: an IF layer's spikes are ready one stage after its input current, everything else as
soon as its inputs are. Residual edges and concatenations need nothing special: a stage reads
whatever earlier stages (or the kernel) produced."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..graph import export_model


@dataclass
class Stage:
    model: onnx.ModelProto
    inputs: list[gs.Tensor]
    outputs: list[gs.Tensor]
    level: int


def levels(graph: gs.Graph, spikes_of: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """(stage of every node, stage at which every tensor is ready). ``spikes_of`` maps each
    cut layer's spikes tensor to its input current: the spikes are ready one stage later."""
    producer = {t.name: node for node in graph.nodes for t in node.outputs}
    tensor_level: dict[str, int] = {}
    node_level: dict[str, int] = {}

    def of_tensor(name: str) -> int:
        if name not in tensor_level:
            if name in spikes_of:
                tensor_level[name] = of_tensor(spikes_of[name]) + 1
            elif name in producer:
                tensor_level[name] = of_node(producer[name])
            else:
                tensor_level[name] = 0  # a graph input
        return tensor_level[name]

    def of_node(node: gs.Node) -> int:
        if node.name not in node_level:
            names = [t.name for t in node.inputs if isinstance(t, gs.Variable) and t.name]
            node_level[node.name] = max((of_tensor(name) for name in names), default=0)
        return node_level[node.name]

    for node in graph.nodes:
        of_node(node)
    for name in spikes_of:
        of_tensor(name)
    return node_level, tensor_level


def split_stages(
    graph: gs.Graph, node_level: dict[str, int], wanted: set[str], opset_imports: list[onnx.OperatorSetIdProto]
) -> list[Stage]:
    """One model per stage; a stage outputs what later stages read and the ``wanted`` tensors
    it computes."""
    depth = max(node_level.values(), default=0) + 1
    read_at: dict[str, set[int]] = {}
    for node in graph.nodes:
        for t in node.inputs:
            read_at.setdefault(t.name, set()).add(node_level[node.name])
    stages = []
    for level in range(depth):
        nodes = [n for n in graph.nodes if node_level[n.name] == level]
        if not nodes:
            continue
        produced = {t.name for n in nodes for t in n.outputs}
        inputs: dict[str, gs.Tensor] = {}
        outputs: dict[str, gs.Tensor] = {}
        for node in nodes:
            for t in node.inputs:
                if isinstance(t, gs.Variable) and t.name and t.name not in produced:
                    inputs[t.name] = t
            for t in node.outputs:
                if t.name in wanted or any(at > level for at in read_at.get(t.name, ())):
                    outputs[t.name] = t
        if not outputs:
            continue  # nothing here that anyone reads
        for t in list(inputs.values()) + list(outputs.values()):
            t.dtype = t.dtype or np.float32
        stage = gs.Graph(nodes=nodes, inputs=list(inputs.values()), outputs=list(outputs.values()))
        stages.append(Stage(export_model(stage, opset_imports), list(inputs.values()), list(outputs.values()), level))
    return stages
