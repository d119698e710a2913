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

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import ConfigError
from .calibrate import activation_nodes
from .statistics import channel_rows, simulation_subset, stream_activations

KINDS = ("bias", "potential")


def _channel_mean(values) -> np.ndarray:
    total, count = None, 0
    for a in values:
        rows = channel_rows(a, True)
        s = rows.sum(axis=1, dtype=np.float64)
        total = s if total is None else total + s
        count += rows.shape[1]
    return total / max(count, 1)


def _snn_mean(graph, thresholds, neurons, corrections, out: str, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-channel mean output of the SNN truncated at ``out`` over T steps and the data."""
    from ..build import assemble
    from ..runtime.session import SNNSession

    snn = assemble(graph, thresholds, neurons, corrections=corrections, outputs=[out], check=False)
    session = SNNSession(snn, providers="cpu", batch_size=batch_size, encoding=neurons.encoding, seed=neurons.seed)
    return _channel_mean(values[out] for _, _, _, values in session.iter_steps(x, neurons.timesteps))


def correct_layers(
    graph: gs.Graph, thresholds: dict[str, np.ndarray], x: np.ndarray, neurons, kinds, batch_size: int = 128
):
    """The ``build.Corrections`` for ``kinds`` (a subset of "bias", "potential")."""
    from ..build import Corrections

    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ConfigError(f"unknown correction {', '.join(sorted(unknown))!r}: use {' and/or '.join(KINDS)}")
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
            theta = np.asarray(thresholds[node.name], np.float32)
            v0 = np.float32(neurons.v_init) * theta + np.float32(neurons.timesteps) * gap.reshape(shape)
            corrections.membrane_init[node.name] = np.asarray(v0, np.float32)
    return corrections
