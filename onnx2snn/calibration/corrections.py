"""Training-free layer-wise corrections after thresholds are set (Li et al., ICML 2021,
"A Free Lunch From ANN", sec. 4.2-4.3, the "light" pipeline).

Layer by layer in graph order, with the corrections of earlier layers in place: simulate the
SNN up to this layer for T steps on the calibration data (at most 1,024 samples of it, seeded)
and measure, per channel, the mean
gap between the ANN activation and the SNN's output rate (spikes carry theta, so their mean
over steps is directly comparable):

    e_c = E[a_c] - E[r_c]

- ``bias``       add e_c to the neuron's input current every step (bias correction);
- ``potential``  start the membrane at ``v_init * theta + T * e_c`` (potential correction:
                 the same extra charge delivered at once, tuned for the artifact's T).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_graphsurgeon as gs

from ..data import Inputs
from ..errors import ConfigError
from ..neuron import Corrections, Neurons, start_membrane
from ..passes import activation_nodes
from . import levelwise
from .simulate import simulate, simulation_subset
from .statistics import channel_rows, stream_activations

# name -> rule, for the command line's help
CORRECTIONS = {
    "bias": "add the per-channel mean gap between ANN activation and SNN rate to the input current",
    "potential": "start the membrane at v_init * theta + T * gap instead",
}


class _ChannelMean:
    """A per-channel mean, streamed over arrays [n, C, ...] (float64 sums)."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, a: np.ndarray) -> None:
        rows = channel_rows(a, True)
        s = rows.sum(axis=1, dtype=np.float64)
        self.total = s if self.total is None else self.total + s
        self.count += rows.shape[1]

    def value(self) -> np.ndarray:
        return self.total / max(self.count, 1)


def _channel_mean(values) -> np.ndarray:
    mean = _ChannelMean()
    for a in values:
        mean.add(a)
    return mean.value()


def _snn_mean(graph, thresholds, neurons, corrections, out: str, x: Inputs, batch_size: int) -> np.ndarray:
    """Per-channel mean output of the SNN truncated at ``out`` over T steps and the data."""
    return _channel_mean(simulate(graph, thresholds, neurons, out, x, batch_size, corrections))


def check_corrections(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` without repeats, or a ConfigError naming the unknown one."""
    unknown = [k for k in kinds if k not in CORRECTIONS]
    if unknown:
        raise ConfigError(f"unknown correction {', '.join(unknown)!r}: use {' and/or '.join(CORRECTIONS)}")
    return tuple(dict.fromkeys(kinds))


def _ann_means(graph: gs.Graph, nodes: list[gs.Node], x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Per activation node, its per-channel mean activation in the ANN: one pass for all."""
    means = {node.name: _ChannelMean() for node in nodes}
    for acts in stream_activations(graph, [node.outputs[0].name for node in nodes], x, batch_size):
        for node in nodes:
            means[node.name].add(acts[node.outputs[0].name])
    return {name: mean.value() for name, mean in means.items()}


def _shape(node: gs.Node) -> tuple[int, ...]:
    """Per channel values broadcast over the layer: (C, 1, ..., 1)."""
    return (-1,) + (1,) * max(len(node.outputs[0].shape or ()) - 2, 0)


def correct_layers(
    graph: gs.Graph,
    thresholds: dict[str, np.ndarray],
    x: Inputs,
    neurons: Neurons,
    kinds: Sequence[str],
    batch_size: int = 128,
) -> Corrections:
    """The corrections of ``kinds`` (a subset of CORRECTIONS), layer by layer."""
    kinds = check_corrections(kinds)
    corrections = Corrections()
    if not kinds:
        return corrections
    x = simulation_subset(x, neurons.seed)
    nodes = activation_nodes(graph)
    ann_mean = _ann_means(graph, nodes, x, batch_size)
    if not (levelwise.usable(graph) and levelwise.fits(graph, neurons, x)):  # the network up to each layer
        for node in nodes:
            out, shape = node.outputs[0].name, _shape(node)
            if "bias" in kinds:
                gap = ann_mean[node.name] - _snn_mean(graph, thresholds, neurons, corrections, out, x, batch_size)
                corrections.current[node.name] = gap.reshape(shape).astype(np.float32)
            if "potential" in kinds:
                gap = ann_mean[node.name] - _snn_mean(graph, thresholds, neurons, corrections, out, x, batch_size)
                v0 = start_membrane(thresholds[node.name], neurons.v_init) + np.float32(
                    neurons.timesteps
                ) * gap.reshape(shape)
                corrections.membrane_init[node.name] = np.asarray(v0, np.float32)
        return corrections
    by_name = {node.name: node for node in nodes}
    sim = levelwise.Levelwise(graph, neurons, x, batch_size, shifts="bias" in kinds)
    for level in sim.levels:
        settings = {
            layer: levelwise.LayerSetting(thresholds[layer], sim.start(thresholds[layer]))
            for layer in sim.layers_at(level)
        }
        if "bias" in kinds:
            for layer, gap in _gaps(sim, level, settings, ann_mean).items():
                corrections.current[layer] = gap.reshape(_shape(by_name[layer])).astype(np.float32)
            sim.set_shifts({layer: corrections.current[layer] for layer in settings})
        if "potential" in kinds:
            for layer, gap in _gaps(sim, level, settings, ann_mean).items():
                v0 = settings[layer].start + np.float32(neurons.timesteps) * gap.reshape(_shape(by_name[layer]))
                corrections.membrane_init[layer] = settings[layer].start = np.asarray(v0, np.float32)
        sim.fire(level, settings)
    return corrections


def _gaps(sim, level: int, settings: dict, ann_mean: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per layer at ``level``: ANN mean minus SNN rate per channel, with the settings as they are."""
    rates = {layer: _ChannelMean() for layer in settings}
    for _, currents in sim.currents(level):
        for layer, current in currents.items():
            for step in sim.spikes(layer, current, settings[layer]):
                rates[layer].add(step)
    return {layer: ann_mean[layer] - rate.value() for layer, rate in rates.items()}
