"""The unrolled form cut open at its IF layers: what onnxruntime computes between the layers
over all T steps at once ([T*N, ...] batches), with each layer's input current leaving the graph
and its spikes coming back in. Calibration fills the cuts level by level (calibration/levelwise.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from ..artifact import SNNModel
from ..neuron import OP_TYPE
from .stages import levels
from .unrolled import _Unroller


@dataclass
class Cut:
    """One IF layer cut out: its input ``current`` ([T, N, ...], or [N, ...] when it is the same
    every step) leaves the stage before; its ``spikes`` [T, N, ...] enter the stages after, at
    ``level``."""

    layer: dict[str, Any]
    current: str
    spikes: str
    constant: bool
    level: int = 0


class _Cutter(_Unroller):
    def __init__(self, snn: SNNModel, timesteps: int, varying_inputs: Sequence[str]):
        super().__init__(snn, timesteps, varying_inputs=varying_inputs)
        self.cuts: list[Cut] = []

    def neuron(self, node: gs.Node, layer: dict) -> None:
        if node.op != OP_TYPE:  # the cuts are filled by the IF kernel: any other neuron would be computed as IF
            raise ValueError(f"layer '{node.name}' is a {node.op}: the cut form takes {OP_TYPE} neurons only")
        current = node.inputs[0]
        constant = current.name not in self.varying  # the same current every step: not tiled T times
        x = current if constant else self.b.time_major(current, node.name)
        spikes_t = gs.Variable(f"{node.name}.spikes_over_time", dtype=np.float32)
        self.cuts.append(Cut(layer, x.name, spikes_t.name, constant))
        self.extra_outputs.append(x)
        self.extra_inputs.append(spikes_t)
        spikes = node.outputs[0]
        node.outputs.clear()
        node.inputs.clear()
        self.reroute(spikes, self.b.time_folded(spikes_t, node.name))


def cut_at_neurons(
    snn: SNNModel, timesteps: int, varying_inputs: Sequence[str] = ()
) -> tuple[gs.Graph, list[Cut], dict[str, int]]:
    """(the cut graph, its cuts, the stage of every node). The graph's outputs are the cuts'
    currents; its inputs the data inputs (time-folded: ``varying_inputs``) and the cuts' spikes.
    A node sits in the last stage before its first reader, so that what crosses from one stage
    to a later one is, as far as it can be, spikes."""
    cutter = _Cutter(snn, timesteps, varying_inputs)
    graph = cutter.run()
    graph.outputs = list(cutter.extra_outputs)
    graph.cleanup()
    spikes_of = {cut.spikes: cut.current for cut in cutter.cuts}
    node_level, tensor_level = levels(graph, spikes_of)
    for cut in cutter.cuts:
        cut.level = tensor_level[cut.spikes]
    return graph, cutter.cuts, _as_late_as_possible(graph, cutter.cuts, node_level)


def _as_late_as_possible(graph: gs.Graph, cuts: list[Cut], node_level: dict[str, int]) -> dict[str, int]:
    """Each node moved to the latest stage that still comes before all its readers (never before
    its own inputs are ready)."""
    needed_at = {cut.current: cut.level - 1 for cut in cuts}
    late = dict(node_level)
    for node in reversed(graph.toposort().nodes):
        readers = [late[n.name] for t in node.outputs for n in t.outputs]
        readers += [needed_at[t.name] for t in node.outputs if t.name in needed_at]
        if readers:
            late[node.name] = max(node_level[node.name], min(readers))
    return late
