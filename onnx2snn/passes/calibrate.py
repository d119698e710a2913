"""Calibrate firing thresholds.

The rate of an IF neuron with threshold theta and reset by subtraction approximates
``clip(a, 0, theta)`` for an ANN activation ``a`` (Rueckauer et al. 2017, eq. 5), so theta
must cover the activations that matter. Methods:

- ``max``            theta = max over data of a  (data-based normalization, Diehl et al. 2015)
- ``percentile:P``   theta = P-th percentile of the positive activations
                     (robust normalization, Rueckauer et al. 2017, sec. 2.3), e.g. 99.9, 99.99
- ``mmse``           theta minimizing the T-step quantization error (Li et al. 2021), see mmse.py
- ``spike-norm``     layer by layer, the maximum input current of the SNN built so far
                     (Sengupta et al. 2019), see spike_norm.py; ``spike-norm:seed`` is the
                     original research script's variant (mean over steps and samples of the
                     99th percentile over the layer's neurons), ``spike-norm:P`` that variant
                     with percentile P

per layer (a scalar) or per channel (axis 1). A ReLU6-style Clip(0, m) caps theta at m.
Statistics stream over batches (statistics.py), so memory does not grow with the data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import ConfigError
from .check_supported import ACTIVATIONS, clip_max

METHODS = ("max", "percentile:P", "mmse", "spike-norm", "spike-norm:seed")


@dataclass(frozen=True)
class Method:
    name: str  # "max" | "percentile" | "mmse" | "spike-norm"
    percentile: float | None = None

    def __str__(self) -> str:
        return self.name if self.percentile is None else f"{self.name}:{self.percentile:g}"


def _percent(text: str, method: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise ConfigError(f"percentile must be a number, got {text!r} in method {method!r}") from None
    if not 0.0 < p <= 100.0:
        raise ConfigError(f"percentile must lie in (0, 100], got {p:g}")
    return p


def parse_method(method: str) -> Method:
    name, _, arg = method.partition(":")
    if name in ("max", "mmse") and not arg:
        return Method(name)
    if name == "percentile":
        return Method("percentile", _percent(arg or "99.99", method))
    if name == "spike-norm":
        if not arg:
            return Method("spike-norm")
        return Method("spike-norm", 99.0 if arg == "seed" else _percent(arg, method))
    raise ConfigError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")


def per_layer_only(method: str) -> bool:
    """The original script's Spike-Norm variant takes one percentile over a whole layer."""
    m = parse_method(method)
    return m.name == "spike-norm" and m.percentile is not None


def activation_nodes(graph: gs.Graph) -> list[gs.Node]:
    """The nodes that become IF neurons, in graph order."""
    return [n for n in graph.toposort().nodes if n.op in ACTIVATIONS]


def finish_thresholds(graph: gs.Graph, values: dict[str, np.ndarray], per_channel: bool) -> dict[str, np.ndarray]:
    """Shape raw per-row values into thresholds: a dead channel (or layer) keeps the layer's
    (or a unit) threshold, Clip(0, m) caps at m, per-channel values get shape (C, 1, ..., 1)."""
    thresholds = {}
    for node in activation_nodes(graph):
        theta = np.asarray(values[node.name], dtype=np.float64).reshape(-1)
        layer_value = float(theta.max())
        theta = np.where(theta > 0, theta, layer_value if layer_value > 0 else 1.0)
        if node.op == "Clip":
            cap = clip_max(node)
            if cap is not None:
                theta = np.minimum(theta, cap)
        rank = len(node.outputs[0].shape or ())
        if per_channel and rank >= 2 and theta.size > 1:
            theta = theta.reshape((-1,) + (1,) * (rank - 2))
        else:
            theta = np.asarray(theta.max() if theta.size > 1 else theta.reshape(()))
        thresholds[node.name] = theta.astype(np.float32)
    return thresholds


def calibrate(
    graph: gs.Graph,
    x: np.ndarray,
    method: str = "max",
    per_channel: bool = False,
    neurons=None,
    batch_size: int = 128,
) -> dict[str, np.ndarray]:
    """Thresholds for every activation node: node name -> float32 array (scalar, or shape
    ``(C, 1, ..., 1)`` per channel). ``neurons`` (a ``build.Neurons``) gives T, v_init and the
    encoding to the methods that depend on them (mmse, spike-norm)."""
    from ..build import Neurons
    from .mmse import mmse_thresholds
    from .spike_norm import spike_norm_thresholds
    from .statistics import Histograms

    m = parse_method(method)
    neurons = neurons or Neurons()
    if m.name == "spike-norm":
        return finish_thresholds(
            graph, spike_norm_thresholds(graph, x, neurons, per_channel, m.percentile, batch_size), per_channel
        )
    nodes = activation_nodes(graph)
    names = [n.outputs[0].name for n in nodes]
    hist = Histograms(graph, names, x, per_channel, batch_size)
    values = {}
    for node, name in zip(nodes, names):
        if m.name == "max":
            values[node.name] = hist.maxima[name]
        elif m.name == "percentile":
            values[node.name] = hist.percentile(name, m.percentile or 100.0)
        else:
            values[node.name] = mmse_thresholds(hist, name, neurons.timesteps, neurons.v_init)
    return finish_thresholds(graph, values, per_channel)
