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
from .simulate import simulate, simulation_subset
from .statistics import channel_rows, stream_activations

# name -> rule, for the command line's help
CORRECTIONS = {
    "bias": "add the per-channel mean gap between ANN activation and SNN rate to the input current",
    "potential": "start the membrane at v_init * theta + T * gap instead",
}


def _channel_mean(values) -> np.ndarray:
    total, count = None, 0
    for a in values:
        rows = channel_rows(a, True)
        s = rows.sum(axis=1, dtype=np.float64)
        total = s if total is None else total + s
        count += rows.shape[1]
    return total / max(count, 1)


def _snn_mean(graph, thresholds, neurons, corrections, out: str, x: Inputs, batch_size: int) -> np.ndarray:
    """Per-channel mean output of the SNN truncated at ``out`` over T steps and the data."""
    return _channel_mean(simulate(graph, thresholds, neurons, out, x, batch_size, corrections))


def check_corrections(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` without repeats, or a ConfigError naming the unknown one."""
    unknown = [k for k in kinds if k not in CORRECTIONS]
    if unknown:
        raise ConfigError(f"unknown correction {', '.join(unknown)!r}: use {' and/or '.join(CORRECTIONS)}")
    return tuple(dict.fromkeys(kinds))


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
    for node in activation_nodes(graph):
        out = node.outputs[0].name
        rank = len(node.outputs[0].shape or ())
        shape = (-1,) + (1,) * max(rank - 2, 0)
        ann_mean = _channel_mean(a[out] for a in stream_activations(graph, [out], x, batch_size))
        if "bias" in kinds:
            gap = ann_mean - _snn_mean(graph, thresholds, neurons, corrections, out, x, batch_size)
            corrections.current[node.name] = gap.reshape(shape).astype(np.float32)
        if "potential" in kinds:
            gap = ann_mean - _snn_mean(graph, thresholds, neurons, corrections, out, x, batch_size)
            v0 = start_membrane(thresholds[node.name], neurons.v_init) + np.float32(neurons.timesteps) * gap.reshape(
                shape
            )
            corrections.membrane_init[node.name] = np.asarray(v0, np.float32)
    return corrections
