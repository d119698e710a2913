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

import onnx2snn.calibration.levelwise as levelwise

from ..data import Inputs
from ..errors import ConfigError
from ..neuron import Corrections, Neurons, start_membrane
from ..passes import activation_nodes
from .reduce import ExactSum, channel_sums
from .shards import LocalWorkers, levelwise_ok, merge_sums
from .simulate import simulate, simulation_subset

# name -> rule, for the command line's help
CORRECTIONS = {
    "bias": "add the per-channel mean gap between ANN activation and SNN rate to the input current",
    "potential": "start the membrane at v_init * theta + T * gap instead",
}


def _snn_mean(graph, thresholds, neurons, corrections, out: str, x: Inputs, batch_size: int) -> np.ndarray:
    """Per-channel mean output of the SNN truncated at ``out`` over T steps and the data: per
    sample, its steps summed, then its channels (as shards.CalibrationShard.rates does)."""
    total = ExactSum()
    steps = None
    for t, step in enumerate(simulate(graph, thresholds, neurons, out, x, batch_size, corrections)):
        if t % neurons.timesteps == 0:
            steps = step.astype(np.float64)
        else:
            steps += step
        if t % neurons.timesteps == neurons.timesteps - 1:
            per_sample, positions = channel_sums(steps)
            total.add(per_sample, positions * neurons.timesteps)
    return total.mean()


def check_corrections(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` without repeats, or a ConfigError naming the unknown one."""
    unknown = [k for k in kinds if k not in CORRECTIONS]
    if unknown:
        raise ConfigError(f"unknown correction {', '.join(unknown)!r}: use {' and/or '.join(CORRECTIONS)}")
    return tuple(dict.fromkeys(kinds))


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
    workers=None,
) -> Corrections:
    """The corrections of ``kinds`` (a subset of CORRECTIONS), layer by layer. ``workers`` hold
    the calibration data in shards (shards.py; all of ``x`` in this process by default)."""
    kinds = check_corrections(kinds)
    corrections = Corrections()
    if not kinds:
        return corrections
    nodes = {node.name: node for node in activation_nodes(graph)}
    workers = workers or LocalWorkers.of(graph, x, neurons, batch_size)
    outs = {node.outputs[0].name: name for name, node in nodes.items()}
    ann_mean = {outs[out]: total.mean() for out, total in merge_sums(workers.call("ann_sums", list(outs))).items()}
    if not levelwise_ok(workers, graph, neurons):  # the network up to each layer, simulated again
        x = simulation_subset(workers.local_inputs, neurons.seed, graph)
        for node in nodes.values():
            out, shape = node.outputs[0].name, _shape(node)
            if "bias" in kinds:
                gap = ann_mean[node.name] - _snn_mean(graph, thresholds, neurons, corrections, out, x, batch_size)
                corrections.current[node.name] = gap.reshape(shape).astype(np.float32)
            if "potential" in kinds:
                gap = ann_mean[node.name] - _snn_mean(graph, thresholds, neurons, corrections, out, x, batch_size)
                start = start_membrane(thresholds[node.name], neurons.v_init)
                corrections.membrane_init[node.name] = np.asarray(
                    start + np.float32(neurons.timesteps) * gap.reshape(shape), np.float32
                )
        workers.call("finish")  # the simulation ann_sums opened for its chunks
        return corrections
    for level in workers.call("start", "bias" in kinds)[0]:
        settings = {
            layer: levelwise.LayerSetting(thresholds[layer], start_membrane(thresholds[layer], neurons.v_init))
            for layer in workers.call("layers_at", level)[0]
        }
        if "bias" in kinds:
            for layer, gap in _gaps(workers, level, settings, ann_mean).items():
                corrections.current[layer] = gap.reshape(_shape(nodes[layer])).astype(np.float32)
            workers.call("set_shifts", {layer: corrections.current[layer] for layer in settings})
        if "potential" in kinds:
            for layer, gap in _gaps(workers, level, settings, ann_mean).items():
                v0 = settings[layer].start + np.float32(neurons.timesteps) * gap.reshape(_shape(nodes[layer]))
                corrections.membrane_init[layer] = settings[layer].start = np.asarray(v0, np.float32)
        workers.call("fire", level, settings)
    workers.call("finish")
    return corrections


def _gaps(workers, level: int, settings: dict, ann_mean: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per layer at ``level``: ANN mean minus SNN rate per channel, with the settings as they are."""
    rates = merge_sums(workers.call("rates", level, settings))
    return {layer: ann_mean[layer] - rates[layer].mean() for layer in settings}
