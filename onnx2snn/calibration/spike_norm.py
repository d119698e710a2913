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

import onnx2snn.calibration.levelwise as levelwise

from ..data import Inputs
from ..errors import CalibrationError
from ..neuron import Neurons, start_membrane
from ..passes import activation_nodes
from .reduce import Peak
from .shards import LocalWorkers, levelwise_ok
from .simulate import simulate, simulation_subset


def _value(peak: Peak, node: gs.Node) -> np.ndarray:
    value = peak.value()
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
    graph: gs.Graph,
    x: Inputs,
    neurons: Neurons,
    per_channel: bool,
    percentile: float | None,
    batch_size: int,
    workers=None,
) -> dict[str, np.ndarray]:
    """Per activation node, the per-row (channel or layer) value its threshold is set from.
    ``workers`` hold the calibration data in shards (shards.py; all of ``x`` in this process by
    default)."""
    per_channel = per_channel and percentile is None
    nodes = {node.name: node for node in activation_nodes(graph)}
    workers = workers or LocalWorkers.of(graph, x, neurons, batch_size)
    if levelwise_ok(workers, graph, neurons):  # each layer simulated once, level by level
        return _levelwise_values(workers, nodes, neurons, per_channel, percentile)
    values: dict[str, np.ndarray] = {}
    x = simulation_subset(workers.local_inputs, neurons.seed, graph)
    thresholds: dict[str, np.ndarray] = {}  # the network up to each layer, simulated again
    for node in nodes.values():
        peak = Peak(per_channel, percentile)
        for step in simulate(graph, thresholds, neurons, node.inputs[0].name, x, batch_size):
            peak.add(step)
        values[node.name] = _value(peak, node)
        thresholds[node.name] = _threshold(node, values[node.name], per_channel)
    return values


def _levelwise_values(
    workers, nodes: dict[str, gs.Node], neurons: Neurons, per_channel: bool, percentile: float | None
) -> dict[str, np.ndarray]:
    """spike_norm_thresholds' values, each layer simulated once, level by level."""
    values: dict[str, np.ndarray] = {}
    for level in workers.call("start", False)[0]:
        parts = workers.call("peaks", level, per_channel, percentile)
        settings = {}
        for layer, peak in parts[0].items():
            for part in parts[1:]:
                peak.merge(part[layer])
            values[layer] = _value(peak, nodes[layer])
            theta = _threshold(nodes[layer], values[layer], per_channel)
            settings[layer] = levelwise.LayerSetting(theta, start_membrane(theta, neurons.v_init))
        workers.call("fire", level, settings)
    workers.call("finish")
    return values
