"""Text formatting shared by subcommands."""

from __future__ import annotations

import numpy as np


def describe_threshold(theta: np.ndarray) -> str:
    theta = np.asarray(theta)
    if theta.size == 1:
        return f"{float(theta):.4g}"
    return f"per channel ({theta.size}): min {theta.min():.4g}  mean {theta.mean():.4g}  max {theta.max():.4g}"


def percent(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}%"
