"""Accuracy-vs-timesteps plots (PNG), drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

from .artifact import write_atomic


def plot_accuracy(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    ann_accuracy: Mapping[str, float] | None = None,
    title: str = "SNN accuracy vs timesteps",
    label_prefix: str = "SNN ",
) -> None:
    """One line per curve (label -> {T: accuracy in [0, 1]}), each ANN's accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

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
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
