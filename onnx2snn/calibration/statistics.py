"""One statistics collector for every calibration method: the ANN's activations streamed
batch by batch (never the whole data set in memory), reduced per layer or per channel to a
running maximum and a fixed histogram over [0, max] of the positive values."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_graphsurgeon as gs

from ..data import Inputs, check_inputs
from ..errors import CalibrationError
from ..graph import export_model, shape_of
from ..runtime import kernel
from ..runtime.engine import inference_session, onnxruntime_errors
from ..runtime.inputs import batches

BINS = 4096
# bytes of activations one batch of the statistics pass may return: every activation of a sample
# is an output of that pass (36 MB a sample for ResNet-50 at 224x224), so the batch shrinks to fit
# and the pass's memory stays the same whatever the number of calibration images
STATISTICS_BUDGET = 256 << 20


def channel_rows(a: np.ndarray, per_channel: bool) -> np.ndarray:
    """(channels, values) view: channel axis 1 first, or one row for the whole layer."""
    if per_channel and a.ndim >= 2:
        return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
    return a.reshape(1, -1)


def _sample_size(t: gs.Tensor) -> int:
    """Values of one sample of ``t``; a dimension not known counts as 1 (shapes.py fills
    them in from the data before calibration)."""
    return int(np.prod([d if isinstance(d, int) and d > 0 else 1 for d in (t.shape or [])[1:]]))


class AnnOutputs:
    """The ANN ``graph`` run for the tensors ``names`` (inputs: an array, or a dict by name)."""

    def __init__(self, graph: gs.Graph, names: list[str]):
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
        self.names = names
        self.sample_bytes = sum(4 * _sample_size(tensors[n]) for n in names)
        self.session = inference_session(model, options, ["CPUExecutionProvider"], "the ANN")
        self.specs = [(t.name, shape_of(t)) for t in graph.inputs]
        inp = self.session.get_inputs()[0]
        self.static = inp.shape[0] if inp.shape and isinstance(inp.shape[0], int) else None

    def batch_for(self, batch_size: int) -> int:
        """``batch_size``, smaller where its activations would pass STATISTICS_BUDGET."""
        return max(1, min(batch_size, STATISTICS_BUDGET // max(self.sample_bytes, 1)))

    def stream(self, x: Inputs, batch_size: int, exact: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """The named tensors, batch by batch (at most ``batch_size`` samples a batch, fewer
        where their activations would pass STATISTICS_BUDGET; exactly ``batch_size`` where
        ``exact``: a probe whose batch axis is told by its size)."""
        size = batch_size if exact else self.batch_for(batch_size)
        for batch, n in batches(check_inputs(x, self.specs), size, self.static):
            with onnxruntime_errors("the ANN"):
                values = self.session.run(self.names, batch)
            yield {name: value[:n] for name, value in zip(self.names, values)}


def stream_activations(
    graph: gs.Graph, names: list[str], x: Inputs, batch_size: int, exact: bool = False
) -> Iterator[dict[str, np.ndarray]]:
    """Run the ANN ``graph`` on ``x`` (an array, or a dict by input name) batch by batch;
    yield the named tensors of each batch (``exact``: batches of ``batch_size``, see stream)."""
    yield from AnnOutputs(graph, names).stream(x, batch_size, exact)


def check_finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise CalibrationError(f"activation '{name}' has non-finite values on the calibration data")


def row_maxima(a: np.ndarray, per_channel: bool) -> np.ndarray:
    """Per channel (or for the whole layer) the largest value of ``a`` [n, C, ...]."""
    if per_channel and a.ndim >= 2:
        return a.max(axis=tuple(i for i in range(a.ndim) if i != 1))
    return a.max(keepdims=False).reshape(1)


def row_counts(a: np.ndarray, per_channel: bool, maxima: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[rows, BINS] counts of the positive values of ``a`` in bins of width max/BINS per row
    (the compiled kernel's one pass where it is built; the same counts), added into ``out``
    where given (no array of counts per batch: ResNet-50's are 740 MB)."""
    if kernel.available():
        return kernel.histogram(a, per_channel and a.ndim >= 2, maxima, BINS, out)
    rows = channel_rows(a, per_channel)
    top = maxima[:, None]
    scale = np.where(top > 0, BINS / np.where(top > 0, top, 1.0), 0.0)
    bins = np.minimum((rows * scale).astype(np.int64), BINS - 1)
    flat = (np.arange(rows.shape[0])[:, None] * BINS + bins)[rows > 0]
    counts = np.bincount(flat, minlength=rows.shape[0] * BINS).reshape(rows.shape[0], BINS)
    if out is None:
        return counts
    out += counts
    return out


class Histograms:
    """Per layer (or channel) maxima and histograms of the positive activations, two passes,
    over the calibration workers' shards: maxima merge by maximum, counts by sum (exact)."""

    def __init__(self, workers, names: list[str], per_channel: bool):
        self.names = names
        self.maxima: dict[str, np.ndarray] = {}
        for part in workers.call("maxima", names, per_channel):
            for name, peak in part.items():
                self.maxima[name] = np.maximum(self.maxima[name], peak) if name in self.maxima else peak
        if not self.maxima:
            raise CalibrationError("calibration data is empty")
        self._workers, self._per_channel = workers, per_channel
        self._counts: dict[str, np.ndarray] | None = None

    @property
    def counts(self) -> dict[str, np.ndarray]:
        """name -> [rows, BINS] counts of positive values in bins of width max/BINS (second pass, on demand)."""
        if self._counts is None:
            counts: dict[str, np.ndarray] = {}
            for part in self._workers.call("counts", self.names, self._per_channel, self.maxima):
                for name, c in part.items():
                    if name in counts:
                        counts[name] += c
                    else:  # the first part's own array: no second copy of every count (unless read-only, from Ray)
                        counts[name] = c if c.flags.writeable else c.copy()
            for name in self.names:
                counts.setdefault(name, np.zeros((len(self.maxima[name]), BINS), dtype=np.int64))
            self._counts = counts
        return self._counts

    def centers(self, name: str) -> np.ndarray:
        """[rows, BINS] bin centres."""
        width = self.maxima[name][:, None] / BINS
        return (np.arange(BINS)[None, :] + 0.5) * width

    def percentile(self, name: str, p: float) -> np.ndarray:
        """The p-th percentile of the positive values per row, interpolated inside its bin."""
        h = self.counts[name]
        cum = np.cumsum(h, axis=1)
        total = cum[:, -1]
        target = total * (p / 100.0)
        idx = np.minimum((cum < target[:, None]).sum(axis=1), BINS - 1)
        below = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[:, None], 1)[:, 0], 0)
        in_bin = np.take_along_axis(h, idx[:, None], 1)[:, 0]
        frac = np.where(in_bin > 0, (target - below) / np.maximum(in_bin, 1), 1.0)
        width = self.maxima[name] / BINS
        return np.where(total > 0, (idx + np.clip(frac, 0, 1)) * width, 0.0)
