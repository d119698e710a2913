"""The conversion report: every node of the ANN and what became of it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs

from .files import save_json, save_text

KEPT = "linear: applied to spikes as it is"
# what each rewrite does to the nodes it removes
PASS_FATES = {
    "fold_constants": ("folded", "a constant subgraph, evaluated once at conversion"),
    "fold_weight_quantize": ("folded", "a weight's QuantizeLinear, into the integer weights it makes"),
    "remove_identity": ("removed", "passes its input through at inference"),
    "fold_batchnorm": ("folded", "into the Conv/Gemm before it (or a per-channel affine map)"),
    "matmul_add_to_gemm": ("merged", "MatMul + Add became one Gemm"),
    "strip_output_activation": ("moved", "applied after decoding, to the mean output over steps"),
    "move_output_head": ("moved", "part of the output head (e.g. arg-max, label lookup), applied after decoding"),
    "keep_outputs": ("removed", "feeds only outputs that were not kept"),
}


class Report:
    def __init__(self, graph: gs.Graph):
        self.entries: dict[str, dict] = {
            n.name: {"node": n.name, "op": n.op, "fate": "kept", "detail": KEPT} for n in graph.nodes
        }

    def run(self, graph: gs.Graph, rewrite: Callable[[gs.Graph], gs.Graph], name: str | None = None) -> gs.Graph:
        """Apply ``rewrite`` and record which original nodes it took away, with the fate
        PASS_FATES gives the pass ``name`` (the rewrite's own name by default)."""
        name = name or rewrite.__name__
        before = {n.name for n in graph.nodes}
        graph = rewrite(graph)
        fate, detail = PASS_FATES.get(name, ("rewritten", f"by {name}"))
        for name in before - {n.name for n in graph.nodes}:
            if name in self.entries and self.entries[name]["fate"] == "kept":
                self.entries[name].update(fate=fate, detail=detail)
        return graph

    def mark(self, name: str, fate: str, detail: str) -> None:
        if name in self.entries:
            self.entries[name].update(fate=fate, detail=detail)

    def rows(self) -> list[dict]:
        return list(self.entries.values())


def describe_calibration(calibration: dict, timesteps: int | None = None) -> str:
    """How an artifact's thresholds were set, from its ``calibration`` metadata, e.g.
    ``mmse per channel + potential correction, tuned for T=16``."""
    text = calibration["method"] + (" per channel" if calibration["per_channel"] else " per layer")
    text += "".join(f" + {c} correction" for c in calibration.get("corrections", []))
    return text + (f", tuned for T={timesteps}" if timesteps else "")


def describe_threshold(theta: np.ndarray) -> str:
    theta = np.asarray(theta)
    if theta.size == 1:
        return f"{float(theta):.4g}"
    return f"per channel ({theta.size}): min {theta.min():.4g}  mean {theta.mean():.4g}  max {theta.max():.4g}"


def format_report(rows: list[dict]) -> str:
    """A plain-text table, one node a line."""
    width = max([len(r["node"]) for r in rows] + [4])
    ops = max([len(r["op"]) for r in rows] + [2])
    lines = [f"{'node':{width}s}  {'op':{ops}s}  {'fate':9s}  detail"]
    for r in rows:
        lines.append(f"{r['node']:{width}s}  {r['op']:{ops}s}  {r['fate']:9s}  {r['detail']}")
    counts = {}
    for r in rows:
        counts[r["fate"]] = counts.get(r["fate"], 0) + 1
    lines.append("  ".join(f"{n} {fate}" for fate, n in counts.items()))
    return "\n".join(lines)


def write_report(rows: list[dict], path: str | os.PathLike) -> Path:
    """JSON for a ``.json`` path, the text table otherwise; written whole or not at all."""
    if Path(path).suffix == ".json":
        return save_json(rows, path)
    return save_text(format_report(rows), path)
