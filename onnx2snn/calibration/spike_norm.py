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
from . import levelwise
from .simulate import simulate, simulation_subset


def _rows(current: np.ndarray, per_channel: bool) -> np.ndarray:
    """[samples, rows, values]: one row per channel, or one for the whole layer."""
    n = len(current)
    if per_channel and current.ndim >= 2:
        return current.reshape(n, current.shape[1], -1)
    return current.reshape(n, 1, -1)


class _Peak:
    """The statistic Spike-Norm sets a threshold from, taken step by step over a layer's input
    current: its maximum per row, or the mean over steps and samples of a percentile per row."""

    def __init__(self, per_channel: bool, percentile: float | None):
        self.per_channel, self.percentile = per_channel, percentile
        self.peak = self.total = None
        self.count = 0

    def add(self, step: np.ndarray) -> None:
        rows = _rows(step, self.per_channel)
        if self.percentile is None:
            m = rows.max(axis=(0, 2))
            self.peak = m if self.peak is None else np.maximum(self.peak, m)
        else:
            p = np.percentile(rows, self.percentile, axis=2).sum(axis=0)
            self.total = p if self.total is None else self.total + p
            self.count += len(rows)

    def value(self, node: gs.Node) -> np.ndarray:
        value = self.peak if self.percentile is None else self.total / max(self.count, 1)
        if value is None or not np.all(np.isfinite(value)):
            raise CalibrationError(f"no finite input current reached '{node.name}' on the calibration data")
        return value


def _threshold(node: gs.Node, value: np.ndarray, per_channel: bool) -> np.ndarray:
    theta = np.where(value > 0, value, value.max() if value.max() > 0 else 1.0)
    rank = len(node.outputs[0].shape or ())
    if per_channel and rank >= 2:
        return theta.reshape((-1,) + (1,) * (rank - 2)).astype(np.float32)
    return np.asarray(theta.max()).astype(np.float32)


def spike_norm_thresholds(
    graph: gs.Graph, x: Inputs, neurons: Neurons, per_channel: bool, percentile: float | None, batch_size: int
) -> dict[str, np.ndarray]:
    """Per activation node, the per-row (channel or layer) value its threshold is set from."""
    per_channel = per_channel and percentile is None
    x = simulation_subset(x, neurons.seed)
    nodes = {node.name: node for node in activation_nodes(graph)}
    values: dict[str, np.ndarray] = {}
    if levelwise.usable(graph) and levelwise.fits(graph, neurons, x):  # each layer simulated once, level by level
        sim = levelwise.Levelwise(graph, neurons, x, batch_size)
        for level in sim.levels:
            peaks = {layer: _Peak(per_channel, percentile) for layer in sim.layers_at(level)}
            for _, currents in sim.currents(level):
                for layer, current in currents.items():
                    for step in sim.steps(layer, current):
                        peaks[layer].add(step)
            settings = {}
            for layer, peak in peaks.items():
                values[layer] = peak.value(nodes[layer])
                theta = _threshold(nodes[layer], values[layer], per_channel)
                settings[layer] = levelwise.LayerSetting(theta, sim.start(theta))
            sim.fire(level, settings)
        return values
    thresholds: dict[str, np.ndarray] = {}  # without the kernel: the network up to each layer, simulated again
    for node in nodes.values():
        peak = _Peak(per_channel, percentile)
        for step in simulate(graph, thresholds, neurons, node.inputs[0].name, x, batch_size):
            peak.add(step)
        values[node.name] = peak.value(node)
        thresholds[node.name] = _threshold(node, values[node.name], per_channel)
    return values
