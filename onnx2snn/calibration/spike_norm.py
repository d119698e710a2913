"""Spike-Norm (Sengupta et al. 2019, "Going Deeper in Spiking Neural Networks", Alg. 1):
layer by layer in graph order, simulate the SNN built so far for T steps on the calibration
data (at most 1,024 samples of it, seeded) and set the layer's threshold to the maximum of
its input current over steps, neurons and samples; then go on to the next layer with that threshold fixed.

The original research script's variant takes, for each (step, sample), the 99th percentile of
the input current over the layer's neurons and averages it over steps and samples
(``spike-norm:seed``; ``spike-norm:P`` for another percentile). That variant is always per
layer: a percentile over one channel's neurons means little (a dense layer has one). Branching graphs work as chains
do: a layer's input depends only on layers before it in topological order."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..data import Inputs
from ..errors import CalibrationError
from ..neuron import Neurons
from ..passes import activation_nodes
from .simulate import simulate, simulation_subset


def _rows(current: np.ndarray, per_channel: bool) -> np.ndarray:
    """[samples, rows, values]: one row per channel, or one for the whole layer."""
    n = len(current)
    if per_channel and current.ndim >= 2:
        return current.reshape(n, current.shape[1], -1)
    return current.reshape(n, 1, -1)


def spike_norm_thresholds(
    graph: gs.Graph, x: Inputs, neurons: Neurons, per_channel: bool, percentile: float | None, batch_size: int
) -> dict[str, np.ndarray]:
    """Per activation node, the per-row (channel or layer) value its threshold is set from."""
    thresholds: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    per_channel = per_channel and percentile is None
    x = simulation_subset(x, neurons.seed)
    for node in activation_nodes(graph):
        current = node.inputs[0].name
        peak = total = None
        count = 0
        for step in simulate(graph, thresholds, neurons, current, x, batch_size):
            rows = _rows(step, per_channel)
            if percentile is None:
                m = rows.max(axis=(0, 2))
                peak = m if peak is None else np.maximum(peak, m)
            else:
                p = np.percentile(rows, percentile, axis=2).sum(axis=0)
                total = p if total is None else total + p
                count += len(rows)
        value = peak if percentile is None else total / max(count, 1)
        if value is None or not np.all(np.isfinite(value)):
            raise CalibrationError(f"no finite input current reached '{node.name}' on the calibration data")
        values[node.name] = value
        theta = np.where(value > 0, value, value.max() if value.max() > 0 else 1.0)
        rank = len(node.outputs[0].shape or ())
        thresholds[node.name] = (
            theta.reshape((-1,) + (1,) * (rank - 2)) if per_channel and rank >= 2 else np.asarray(theta.max())
        ).astype(np.float32)
    return values
