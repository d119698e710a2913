"""Calibrate firing thresholds from the ANN's activations on calibration data.

The rate of an IF neuron with threshold theta and reset by subtraction approximates
``clip(a, 0, theta)`` for an ANN activation ``a`` (Rueckauer et al. 2017, eq. 5), so theta
must cover the activations that matter:

- ``max``           theta = max over data of a  (data-based normalization, Diehl et al. 2015)
- ``percentile:P``  theta = P-th percentile of the positive activations
                    (robust normalization, Rueckauer et al. 2017, sec. 2.3), e.g. 99.9, 99.99

per layer (a scalar) or per channel (axis 1). A ReLU6-style Clip(0, m) caps theta at m.
Statistics stream over batches: ``max`` keeps one running value per layer/channel;
``percentile`` makes a second pass into a fixed histogram over [0, max] (4096 bins, value
interpolated inside the bin), so memory does not grow with the data set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import CalibrationError, ConfigError
from ..graph import export_model
from .check_supported import ACTIVATIONS, clip_max

BINS = 4096


@dataclass(frozen=True)
class Method:
    name: str  # "max" | "percentile"
    percentile: float | None = None

    def __str__(self) -> str:
        return self.name if self.percentile is None else f"{self.name}:{self.percentile:g}"


def parse_method(method: str) -> Method:
    name, _, arg = method.partition(":")
    if name == "max" and not arg:
        return Method("max")
    if name == "percentile":
        try:
            p = float(arg or "99.99")
        except ValueError:
            raise ConfigError(f"percentile must be a number, got {arg!r} in method {method!r}") from None
        if not 0.0 < p <= 100.0:
            raise ConfigError(f"percentile must lie in (0, 100], got {p:g}")
        return Method("percentile", p)
    raise ConfigError(f"unknown calibration method {method!r}: use 'max' or 'percentile:P'")


def activation_nodes(graph: gs.Graph) -> list[gs.Node]:
    """The nodes that become IF neurons, in graph order."""
    return [n for n in graph.toposort().nodes if n.op in ACTIVATIONS]


def _channel_view(a: np.ndarray, per_channel: bool) -> np.ndarray:
    """(channels, values) view: channel axis 1 first, or one row for the whole layer."""
    if per_channel and a.ndim >= 2:
        return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
    return a.reshape(1, -1)


def _stream(
    graph: gs.Graph, names: list[str], batches: Callable[[], Iterator[np.ndarray]]
) -> Iterator[dict[str, np.ndarray]]:
    """Run the ANN batch by batch and yield the named tensors."""
    import onnxruntime as ort

    g = graph.copy()
    tensors = g.tensors()
    g.outputs = [tensors[n] for n in names]
    for t in g.outputs:
        t.dtype = t.dtype or np.float32
    model = export_model(g.cleanup())
    options = ort.SessionOptions()
    # basic optimizations only: the extended ones fuse Conv+Relu and hide activations
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    for x in batches():
        yield dict(zip(names, session.run(names, {input_name: x})))


def calibrate(
    graph: gs.Graph,
    batches: Callable[[], Iterator[np.ndarray]],
    method: str = "max",
    per_channel: bool = False,
) -> dict[str, np.ndarray]:
    """Thresholds for every activation node: node name -> float32 array (scalar, or shape
    ``(C, 1, ..., 1)`` per channel). ``batches`` returns a fresh iterator over the
    calibration inputs each time it is called (percentile makes two passes)."""
    m = parse_method(method)
    nodes = activation_nodes(graph)
    names = [n.outputs[0].name for n in nodes]
    maxima: dict[str, np.ndarray] = {}
    count = 0
    for acts in _stream(graph, names, batches):
        count += 1
        for name, a in acts.items():
            if not np.all(np.isfinite(a)):
                raise CalibrationError(f"activation '{name}' has non-finite values on the calibration data")
            peak = _channel_view(a, per_channel).max(axis=1)
            maxima[name] = np.maximum(maxima[name], peak) if name in maxima else peak
    if count == 0:
        raise CalibrationError("calibration data is empty")

    values = maxima
    if m.name == "percentile":
        values = _percentiles(graph, names, batches, maxima, per_channel, m.percentile or 100.0)

    thresholds = {}
    for node, name in zip(nodes, names):
        theta = values[name].astype(np.float64)
        layer_value = float(theta.max())
        # a channel (or layer) that never fired on the data keeps the layer's (or a unit) threshold
        theta = np.where(theta > 0, theta, layer_value if layer_value > 0 else 1.0)
        if node.op == "Clip":
            cap = clip_max(node)
            if cap is not None:
                theta = np.minimum(theta, cap)
        rank = len(node.outputs[0].shape or ())
        if per_channel and rank >= 2:
            theta = theta.reshape((-1,) + (1,) * (rank - 2))
        else:
            theta = np.asarray(theta.reshape(()))
        thresholds[node.name] = theta.astype(np.float32)
    return thresholds


def _percentiles(
    graph: gs.Graph,
    names: list[str],
    batches: Callable[[], Iterator[np.ndarray]],
    maxima: dict[str, np.ndarray],
    per_channel: bool,
    p: float,
) -> dict[str, np.ndarray]:
    hist = {n: np.zeros((len(maxima[n]), BINS), dtype=np.int64) for n in names}
    for acts in _stream(graph, names, batches):
        for name, a in acts.items():
            rows = _channel_view(a, per_channel)
            top = maxima[name][:, None]
            scale = np.where(top > 0, BINS / np.where(top > 0, top, 1.0), 0.0)
            bins = np.minimum((rows * scale).astype(np.int64), BINS - 1)
            positive = rows > 0
            flat = (np.arange(rows.shape[0])[:, None] * BINS + bins)[positive]
            hist[name] += np.bincount(flat, minlength=hist[name].size).reshape(hist[name].shape)
    out = {}
    for name in names:
        h = hist[name]
        cum = np.cumsum(h, axis=1)
        total = cum[:, -1:]
        target = total * (p / 100.0)
        idx = np.minimum((cum < target).sum(axis=1), BINS - 1)
        below = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[:, None], 1)[:, 0], 0)
        in_bin = np.take_along_axis(h, idx[:, None], 1)[:, 0]
        frac = np.where(in_bin > 0, (target[:, 0] - below) / np.maximum(in_bin, 1), 1.0)
        width = maxima[name] / BINS
        out[name] = np.where(total[:, 0] > 0, (idx + np.clip(frac, 0, 1)) * width, 0.0)
    return out
