"""Calibrate firing thresholds.

The rate of an IF neuron with threshold theta and reset by subtraction approximates
``clip(a, 0, theta)`` for an ANN activation ``a`` (Rueckauer et al. 2017, eq. 5), so theta
must cover the activations that matter. The methods, one table (``METHODS``) that dispatches
and that the command line's help is written from:

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from ..data import Inputs
from ..errors import ConfigError
from ..neuron import Neurons
from ..passes import activation_nodes
from ..passes.check_supported import clip_max
from .mmse import mmse_thresholds
from .shards import LocalWorkers
from .spike_norm import spike_norm_thresholds
from .statistics import Histograms

# (graph, calibration inputs, method, per_channel, neurons, batch_size, workers) -> node -> per-row values
Values = Callable[[gs.Graph, np.ndarray, "Method", bool, Neurons, int, Any], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Method:
    """A parsed method: its name in METHODS and its percentile, where it takes one."""

    name: str  # "max" | "percentile" | "mmse" | "spike-norm"
    percentile: float | None = None

    def __str__(self) -> str:
        return self.name if self.percentile is None else f"{self.name}:{self.percentile:g}"

    @property
    def per_layer_only(self) -> bool:
        """The original script's Spike-Norm variant takes one percentile over a whole layer."""
        return self.name == "spike-norm" and self.percentile is not None


def _histogram_values(pick: Callable[[Histograms, str, Method, Neurons], np.ndarray], counts: bool = True) -> Values:
    """A method that reads the ANN's activation statistics (one streaming pass); ``counts``:
    it reads the histograms, not only the maxima."""

    def values(graph, x, method, per_channel, neurons, batch_size, workers):
        nodes = activation_nodes(graph)
        names = [n.outputs[0].name for n in nodes]
        hist = Histograms(workers, names, per_channel, counts)
        return {node.name: pick(hist, name, method, neurons) for node, name in zip(nodes, names)}

    return values


def _spike_norm_values(graph, x, method, per_channel, neurons, batch_size, workers):
    return spike_norm_thresholds(graph, x, neurons, per_channel, method.percentile, batch_size, workers)


def _percent(text: str, method: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise ConfigError(f"percentile must be a number, got {text!r} in method {method!r}") from None
    if not 0.0 < p <= 100.0:
        raise ConfigError(f"percentile must lie in (0, 100], got {p:g}")
    return p


@dataclass(frozen=True)
class MethodSpec:
    forms: tuple[str, ...]  # how it is written, e.g. ("spike-norm", "spike-norm:seed", "spike-norm:P")
    rule: str
    argument: Callable[[str, str], float | None]  # (argument after ':', whole text) -> percentile
    values: Values


def _no_argument(arg: str, text: str) -> None:
    if arg:
        raise ConfigError(f"calibration method {text.partition(':')[0]!r} takes no argument, got {text!r}")


METHODS: dict[str, MethodSpec] = {
    "max": MethodSpec(
        ("max",),
        "the largest activation (data-based normalization, Diehl et al. 2015)",
        _no_argument,
        _histogram_values(lambda hist, name, method, neurons: hist.maxima[name], counts=False),
    ),
    "percentile": MethodSpec(
        ("percentile:P",),
        "the P-th percentile of the positive activations, 99.99 by default (Rueckauer et al. 2017)",
        lambda arg, text: _percent(arg or "99.99", text),
        _histogram_values(lambda hist, name, method, neurons: hist.percentile(name, method.percentile or 100.0)),
    ),
    "mmse": MethodSpec(
        ("mmse",),
        "the threshold that minimizes the T-step quantization error (Li et al. 2021)",
        _no_argument,
        _histogram_values(
            lambda hist, name, method, neurons: mmse_thresholds(hist, name, neurons.timesteps, neurons.v_init)
        ),
    ),
    "spike-norm": MethodSpec(
        ("spike-norm", "spike-norm:seed", "spike-norm:P"),
        "layer by layer, the largest input current of the SNN built so far (Sengupta et al. 2019); "
        ":seed or :P the original script's per-layer mean of the 99th (P-th) percentile",
        lambda arg, text: None if not arg else 99.0 if arg == "seed" else _percent(arg, text),
        _spike_norm_values,
    ),
}


def method_forms() -> list[str]:
    """Every way of writing a method, for help texts and errors."""
    return [form for spec in METHODS.values() for form in spec.forms]


def parse_method(method: str | Method) -> Method:
    """``"percentile:99.9"`` -> Method("percentile", 99.9), or a ConfigError."""
    if isinstance(method, Method):
        return method
    name, _, arg = str(method).partition(":")
    spec = METHODS.get(name)
    if spec is None:
        raise ConfigError(f"unknown calibration method {method!r}: use one of {', '.join(method_forms())}")
    return Method(name, spec.argument(arg, method))


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
    x: Inputs,
    method: str | Method = "max",
    per_channel: bool = False,
    neurons: Neurons | None = None,
    batch_size: int = 128,
    workers: Any = None,
) -> dict[str, np.ndarray]:
    """Thresholds for every activation node: node name -> float32 array (scalar, or shape
    ``(C, 1, ..., 1)`` per channel). ``neurons`` gives T, v_init and the encoding to the
    methods that depend on them (mmse, spike-norm). ``workers`` hold the calibration data in
    shards (shards.py; all of ``x`` in this process by default)."""
    method = parse_method(method)
    neurons = neurons or Neurons()
    workers = workers or LocalWorkers.of(graph, x, neurons, batch_size)
    values = METHODS[method.name].values(graph, x, method, per_channel, neurons, batch_size, workers)
    return finish_thresholds(graph, values, per_channel)
