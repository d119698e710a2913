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
from ..runtime.activity import macs_per_sample

# methods that simulate the SNN (spike-norm, corrections) use at most this many samples: their
# cost is samples x T x the network. What they measure are per-channel means, and the default's
# accuracy hardly moves with the number simulated (benchmarks/simulation_samples.py: T = 16 within
# 0.2 pp from 1,024 samples down to 8 on cnn_bn and resnet_small). So a bigger network simulates
# fewer samples, at most what 1,024 samples of the 28x28 reference networks cost, in each of:
# - memory: SIMULATION_NEURONS neuron-samples in its largest layer (1,024 samples of 32 channels
#   at 28x28), the stored spikes and the stage of a chunk growing with it;
# - arithmetic: SIMULATION_MACS multiply-accumulates a step (1,024 samples of resnet_small's
#   9.35 M), the stages' convolutions;
# - neuron updates: SIMULATION_STATE neurons a step (1,024 samples of resnet_small's 56,448),
#   the kernel and the spikes' bits;
# and at least SIMULATION_MIN. At 224x224 (ResNet-18/50, MobileNetV2, VGG-16) that is 8, so the
# default's simulation costs about half of its one pass of the ANN over 256 images.
SIMULATION_SAMPLES = 1024
SIMULATION_NEURONS = 1024 * 32 * 28 * 28
SIMULATION_MACS = 1024 * 9_400_000
SIMULATION_STATE = 1024 * 57_000
SIMULATION_MIN = 8


def simulation_samples(graph: gs.Graph) -> int:
    """How many samples calibration simulates at most for ``graph``."""
    sizes = [
        int(np.prod(shape[1:]))
        for node in activation_nodes(graph)
        if (shape := node.outputs[0].shape) and all(isinstance(d, int) for d in shape[1:])
    ]
    caps = [
        SIMULATION_SAMPLES,
        SIMULATION_NEURONS // max(sizes, default=1),
        SIMULATION_MACS // max(macs_per_sample(graph), 1),
        SIMULATION_STATE // max(sum(sizes), 1),
    ]
    return max(SIMULATION_MIN, min(caps))


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
