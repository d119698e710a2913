"""The SNN built so far, simulated on calibration data: what Spike-Norm and the corrections
measure, layer by layer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_graphsurgeon as gs

from ..build import build_snn
from ..data import Inputs, num_samples, take
from ..neuron import Corrections, Neurons
from ..runtime import SNNSession

# methods that simulate the SNN (spike-norm, corrections) use at most this many samples:
# their cost is samples x T x layers, and means over a thousand samples are stable
SIMULATION_SAMPLES = 1024


def simulation_subset(x: Inputs, seed: int) -> Inputs:
    """At most SIMULATION_SAMPLES samples of ``x``, drawn with ``seed``, in their original order."""
    n = num_samples(x)
    if n <= SIMULATION_SAMPLES:
        return x
    return take(x, np.sort(np.random.default_rng(seed).choice(n, SIMULATION_SAMPLES, replace=False)))


def simulate(
    graph: gs.Graph,
    thresholds: dict[str, np.ndarray],
    neurons: Neurons,
    out: str,
    x: Inputs,
    batch_size: int,
    corrections: Corrections | None = None,
) -> Iterator[np.ndarray]:
    """The value of tensor ``out`` at every step (batch by batch, T steps each) of the SNN of
    ``graph`` truncated at ``out``, with the neurons before it set by ``thresholds`` and
    ``corrections``."""
    snn = build_snn(graph, thresholds, neurons, corrections, outputs=[out])
    session = SNNSession(snn, providers="cpu", batch_size=batch_size, seed=neurons.seed)  # the artifact's encodings
    for _, _, _, values in session.iter_steps(x, neurons.timesteps):
        yield values[out]
