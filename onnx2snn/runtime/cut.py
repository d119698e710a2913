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
    """One IF layer cut out: its input ``current`` ([T*N, ...], or [N, ...] when it is the same
    every step) leaves the stage before, time-folded as computed (onnxruntime would copy a graph
    output reshaped to [T, N, ...]; numpy reshapes it for free); its ``spikes`` [T, N, ...] enter
    the stages after, at ``level``."""

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
        spikes_t = gs.Variable(f"{node.name}.spikes_over_time", dtype=np.float32)
        self.cuts.append(Cut(layer, current.name, spikes_t.name, constant))
        if current not in self.extra_outputs:  # two layers of one current: one output
            self.extra_outputs.append(current)
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


# operators whose work is that of a layer: computed once, never again for a later reader
HEAVY = frozenset({"Conv", "ConvTranspose", "ConvInteger", "Gemm", "MatMul", "MatMulInteger", "Einsum"})


def _recomputable(graph: gs.Graph) -> set[str]:
    """Nodes that are cheap to compute again from what is kept anyway: not HEAVY, no subgraph
    (Scan, Loop, If), and every input a graph input (data, or spikes kept as bits), a constant
    or such a node's output."""
    inputs = {t.name for t in graph.inputs}
    ok: set[str] = set()
    cheap_tensors: set[str] = set()
    for node in graph.toposort().nodes:
        if node.op in HEAVY or any(isinstance(v, gs.Graph) for v in node.attrs.values()):
            continue
        if all(
            isinstance(t, gs.Constant) or not t.name or t.name in inputs or t.name in cheap_tensors for t in node.inputs
        ):
            ok.add(node.name)
            cheap_tensors.update(t.name for t in node.outputs)
    return ok


def _as_late_as_possible(graph: gs.Graph, cuts: list[Cut], node_level: dict[str, int]) -> dict[str, int]:
    """Each node moved to the latest stage that still comes before all its readers (never before
    its own inputs are ready). A cheap node read at several stages (the scaled spikes of a
    residual edge, a max-pool over spikes) is copied into each of them, so that what stays in
    memory between those stages is the spikes it is computed from (bits), not its float output
    (a ResNet-50 block's edge over T steps and 64 samples: 3 GB as floats, 100 MB as bits)."""
    needed_at = {cut.current: cut.level - 1 for cut in cuts}
    cheap = _recomputable(graph)
    late = dict(node_level)
    for node in reversed(graph.toposort().nodes):
        readers = [late[n.name] for t in node.outputs for n in t.outputs]
        readers += [needed_at[t.name] for t in node.outputs if t.name in needed_at]
        if not readers:
            continue
        first = max(node_level[node.name], min(readers))
        if node.name in cheap and not any(t.name in needed_at or t in graph.outputs for t in node.outputs):
            for level in sorted({r for r in readers if r > first}):
                late[_copy_for(graph, node, level, late).name] = level
        late[node.name] = first
    return late


def _copy_for(graph: gs.Graph, node: gs.Node, level: int, late: dict[str, int]) -> gs.Node:
    """A copy of ``node`` that feeds its readers at stage ``level`` instead of the original."""
    suffix = f".at_stage_{level}"
    outputs = [gs.Variable(t.name + suffix, dtype=t.dtype, shape=t.shape) for t in node.outputs]
    copy = gs.Node(node.op, node.name + suffix, dict(node.attrs), list(node.inputs), outputs, domain=node.domain)
    for old, new in zip(node.outputs, outputs):
        for reader in [n for n in old.outputs if late[n.name] == level]:
            for i, t in enumerate(reader.inputs):
                if t is old:
                    reader.inputs[i] = new
    graph.nodes.append(copy)
    return copy
