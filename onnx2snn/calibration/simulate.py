"""The SNN built so far, simulated on calibration data: what Spike-Norm and the corrections
measure, layer by layer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_graphsurgeon as gs

from ..build import build_snn
from ..data import Inputs, num_samples, take
from ..neuron import Corrections, Neurons
from ..passes import activation_nodes
from ..runtime import SNNSession

# methods that simulate the SNN (spike-norm, corrections) use at most this many samples: their
# cost is samples x T x neurons. What they measure are per-channel means, and the default's
# accuracy hardly moves with the number simulated (benchmarks/simulation_samples.py: T = 16 within
# 0.1 pp from 1,024 samples down to 16 on cnn_bn and resnet_small). So a network with bigger
# layers simulates fewer samples: at most SIMULATION_NEURONS neuron-samples in its largest layer
# (1,024 samples of 32 channels at 28x28), at least SIMULATION_MIN samples (ResNet-50 at 224x224: 32)
SIMULATION_SAMPLES = 1024
SIMULATION_NEURONS = 1024 * 32 * 28 * 28
SIMULATION_MIN = 16


def simulation_samples(graph: gs.Graph) -> int:
    """How many samples calibration simulates at most for ``graph``."""
    sizes = [
        int(np.prod(shape[1:]))
        for node in activation_nodes(graph)
        if (shape := node.outputs[0].shape) and all(isinstance(d, int) for d in shape[1:])
    ]
    largest = max(sizes, default=1)
    return max(SIMULATION_MIN, min(SIMULATION_SAMPLES, SIMULATION_NEURONS // largest))


def simulation_subset(x: Inputs, seed: int, graph: gs.Graph | None = None) -> Inputs:
    """At most ``simulation_samples(graph)`` (SIMULATION_SAMPLES without a graph) samples of
    ``x``, drawn with ``seed``, in their original order."""
    n = num_samples(x)
    cap = simulation_samples(graph) if graph is not None else SIMULATION_SAMPLES
    if n <= cap:
        return x
    return take(x, np.sort(np.random.default_rng(seed).choice(n, cap, replace=False)))


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
