"""Accuracy-vs-timesteps and activity plots (PNG), drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

from .files import write_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    """Write the figure as a PNG, all at once (no half-written file), and free it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    write_atomic(path, buffer.getvalue())


def plot_accuracy(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    ann_accuracy: Mapping[str, float] | None = None,
    title: str = "SNN accuracy vs timesteps",
    label_prefix: str = "SNN ",
) -> None:
    """One line per curve (label -> {T: accuracy in [0, 1]}), each ANN's accuracy dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, curve) in enumerate(curves.items()):
        ts = sorted(curve)
        ax.plot(
            ts,
            [100 * curve[t] for t in ts],
            marker="o" if len(ts) <= 12 else None,
            ms=3,
            color=colors[i % len(colors)],
            ls=("-", "--", ":")[(i // len(colors)) % 3],
            label=f"{label_prefix}{label}",
        )
    for i, (label, acc) in enumerate((ann_accuracy or {}).items()):
        ax.axhline(100 * acc, ls="--", lw=1, color=colors[i % len(colors)], label=f"ANN {label}: {100 * acc:.2f}%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_evaluations(
    reports: Mapping[str, dict[str, Any]], path: str | os.PathLike, title: str = "SNN accuracy vs timesteps"
) -> None:
    """Accuracy vs T of each ``evaluate`` report (name -> report), each ANN's accuracy dashed;
    top-1 agreement with the ANN where the data had no labels."""
    from pathlib import Path

    curves, anns = {}, {}
    for name, report in reports.items():
        label = Path(name).stem
        method = report.get("method")
        label = f"{label} ({method})" if method else label
        if report["ann"]["accuracy"] is None:
            curves[label + " agreement"] = {int(t): row["agreement"] for t, row in report["snn"].items()}
        else:
            curves[label] = {int(t): row["accuracy"] for t, row in report["snn"].items()}
            anns[Path(name).stem] = report["ann"]["accuracy"]
    plot_accuracy(curves, path, anns, title)


def plot_activity(report: dict[str, Any], path: str | os.PathLike, title: str = "SNN activity") -> None:
    """Left: each IF layer's firing rate and the share of its neurons that never fired.
    Right: each weighted layer's ANN MACs against the SNN's operations over T steps (log scale).
    ``report``: what runtime.activity.activity returns."""
    import numpy as np

    plt = _pyplot()
    layers, synapses = report["layers"], report["synapses"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 1.4 + 0.35 * max(len(layers), len(synapses), 4)), dpi=120)
    y = np.arange(len(layers))
    left.barh(y - 0.2, [row["rate"] for row in layers], 0.4, label="spikes per neuron per step")
    left.barh(y + 0.2, [row["silent"] for row in layers], 0.4, label="share never firing")
    left.set_yticks(y, [row["node"] for row in layers], fontsize=7)
    left.invert_yaxis()
    left.set_xlim(0, 1)
    left.set_title(f"IF layers (mean rate {report['rate']:.3f})")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7)
    left.grid(True, axis="x", alpha=0.3)
    y = np.arange(len(synapses))
    right.barh(y - 0.2, [row["macs"] for row in synapses], 0.4, label="ANN MACs")
    right.barh(y + 0.2, [row["sops"] for row in synapses], 0.4, label=f"SNN operations, {report['timesteps']} steps")
    right.set_yticks(y, [row["node"] + (" (once)" if row["once"] else "") for row in synapses], fontsize=7)
    right.invert_yaxis()
    right.set_xscale("log")
    ratio = f", {report['ops_ratio']:.2f}x in all" if report["ops_ratio"] is not None else ""
    right.set_title(f"operations per sample{ratio}")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7)
    right.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(f"{title}: {report['samples']} samples, T = {report['timesteps']}", fontsize=10)
    _save(fig, path)
