"""One statistics collector for every calibration method: the ANN's activations streamed
batch by batch, reduced per layer or per channel to a running maximum and a histogram of the
positive values, in one pass of the network over the data.

The histogram's range (its ``top``: BINS bins of width top/BINS) is known only once the
maximum is:

- where the activations of all calibration images fit CACHE_BUDGET (the 28x28 networks), the
  pass keeps them and counts them on [0, max] once the maximum is known: a second pass with no
  second network run;
- past it (224x224 networks: ResNet-18's 256 images hold 2.4 GB of activations), the range is
  the power of two just above the running maximum, and where a later batch passes it the counts
  so far merge pairwise into the doubled range, exactly as if they had been counted on it (a
  power of two scales a float exactly). Counts of shards merge the same way, so the result does
  not depend on the order of batches or the number of workers; the bins are at most twice as
  wide as on [0, max].

Which of the two is decided by the size of the data, never by the machine, so thresholds are
reproducible."""

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
STATISTICS_BUDGET = 256 << 20
# bytes of activations the statistics pass may keep to count them exactly on [0, max] (above):
# with the batch, what bounds the pass's memory whatever the number of calibration images
CACHE_BUDGET = 512 << 20
# values a row that the one-pass histograms count at a time (RunningCounts)
GROUP = 4096
# the smallest and largest power-of-two ranges: BINS / top stays a normal float32
_EXPONENTS = (-100, 127)


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
        # its threads spin between operators during a run, not after it: the histograms that
        # follow each batch use every core (MobileNetV2's default: 8.8 -> 8.2 s; `max` the same)
        options.add_session_config_entry("session.force_spinning_stop", "1")
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


def row_counts(
    a: np.ndarray | list[np.ndarray], per_channel: bool, tops: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """[rows, BINS] counts of the positive values of ``a`` (or of batches ``a`` together) in bins
    of width top/BINS per row (values at or above a row's top in its last bin; the compiled
    kernel's one pass where it is built, the same counts), added into ``out`` where given (no
    array of counts per batch: ResNet-50's are 740 MB)."""
    if kernel.available():
        ndim = (a if isinstance(a, np.ndarray) else a[0]).ndim
        return kernel.histogram(a, per_channel and ndim >= 2, tops, BINS, out)
    if not isinstance(a, np.ndarray):
        a = np.concatenate(a)
    rows = channel_rows(a, per_channel)
    top = tops[:, None]
    scale = np.where(top > 0, BINS / np.where(top > 0, top, 1.0), 0.0)
    bins = np.minimum(rows * scale, BINS - 1).astype(np.int64)  # clamped before the cast: no overflow
    flat = (np.arange(rows.shape[0])[:, None] * BINS + bins)[rows > 0]
    counts = np.bincount(flat, minlength=rows.shape[0] * BINS).reshape(rows.shape[0], BINS)
    if out is None:
        return counts
    np.add(out, counts, out=out, casting="unsafe")  # out may be uint32 (RunningCounts): the counts fit
    return out


def power_tops(maxima: np.ndarray) -> np.ndarray:
    """Per row the power of two strictly above its maximum (0 where the maximum is 0): the
    range of the one-pass histograms."""
    m = np.asarray(maxima, np.float32)
    exponent = np.clip(np.frexp(m)[1], *_EXPONENTS)  # m = f 2^e with f in [0.5, 1): m < 2^e
    return np.where(m > 0, np.ldexp(np.float32(1.0), exponent), 0.0).astype(np.float32)


def rebin(counts: np.ndarray, tops: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``counts`` [rows, BINS] on ranges ``tops`` moved in place onto the ranges ``new``, each a
    power of two times its old one (or any, where a row's old range is 0: it has no counts):
    2^k neighbouring bins make one, which is where row_counts puts each value on the new range."""
    grown = (new > tops) & (tops > 0)
    shifts = np.where(grown, np.frexp(new)[1] - np.frexp(np.where(tops > 0, tops, 1.0))[1], 0)
    for shift in np.unique(shifts[grown]):
        rows = np.nonzero(shifts == shift)[0]
        width = min(1 << int(shift), BINS)
        merged = counts[rows].reshape(len(rows), BINS // width, width).sum(axis=2)
        counts[rows] = 0
        counts[rows, : BINS // width] = merged
    return counts


class RunningCounts:
    """One layer's counts over a stream of batches on power-of-two ranges that grow with the
    running maximum (module docstring): batches come through ``take`` where the compiled kernel
    is built (their maxima read as they are counted), else through ``add`` with their maxima.
    A batch with fewer than GROUP values a row waits for the next ones: counting a few values
    into each of thousands of 32 kB rows misses the caches on every value (ResNet-50's 7x7
    layers: 343 values a row a batch, 2,048 rows), and where the bins go does not depend on when
    they are counted (the running maximum's ranges cover every waiting value)."""

    def __init__(self, per_channel: bool, samples: int | None = None):
        """``samples``: how many samples the stream holds at most, where known: the counts are
        then kept in 32 bits where no row can reach 2^32 values (ResNet-50's: 370 MB, not 740)."""
        self.per_channel, self.samples = per_channel, samples
        self.tops: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self._waiting: list[np.ndarray] = []
        self._unread = False  # whether what waits came through take, its maxima not read yet
        self._maxima: np.ndarray | None = None

    def add(self, a: np.ndarray, maxima: np.ndarray) -> None:
        """Count batch ``a`` (now or with the next ones); ``maxima``: the running maxima with
        ``a`` in them."""
        self._waiting.append(a)
        self._maxima = maxima
        if self._group_full(a):
            self._count()

    def _rows(self, a: np.ndarray) -> int:
        return a.shape[1] if self.per_channel and a.ndim >= 2 else 1

    def _group_full(self, a: np.ndarray) -> bool:
        """Whether what waits (batches like ``a``) holds GROUP values a row: counted then."""
        return sum(w.size for w in self._waiting) >= GROUP * self._rows(a)

    def take(self, a: np.ndarray) -> np.ndarray | None:
        """Batch ``a`` counted by the compiled kernel, now or with the next ones (where it has
        fewer than GROUP values a row), its maxima read in the same pass as its counts (no pass of
        its own: MobileNetV2's small layers' maxima took 0.3 s on one core). The row maxima of
        what was counted now: this batch's, or those of a group that waited; None while it waits."""
        if len(a):
            self._waiting.append(a)
            self._unread = True
        if not self._waiting or not self._group_full(a):
            return None
        return self.flush()

    def flush(self) -> np.ndarray | None:
        """What ``take`` left waiting, counted now: its row maxima (None where nothing waits)."""
        if not self._unread or not self._waiting:
            return None
        group, self._waiting, self._unread = self._waiting, [], False  # counted together, not copied into one
        rows = self._rows(group[0])
        self._allocate(rows, group[0])
        assert self.counts is not None
        tops = np.zeros(rows, np.float32) if self.tops is None else self.tops
        batch, self._maxima, self.tops = kernel.histogram_running(
            group, self.per_channel, self._maxima, tops, self.counts, _EXPONENTS
        )
        return batch

    def _allocate(self, rows: int, a: np.ndarray) -> None:
        if self.counts is not None:
            return
        wide = True
        if self.samples is not None:
            sample = int(np.prod(a.shape[1:]))  # values a sample (the first batch may be empty)
            wide = self.samples * (sample // max(rows, 1)) >= 1 << 32  # a row's values, at most
        # zeroed by a write, not np.zeros: numpy then maps the array in large pages (a 960-channel
        # layer's 16 MB: 16.6 against 4.0 ms of page faults; MobileNetV2's counts are 255 MB)
        self.counts = np.empty((rows, BINS), np.int64 if wide else np.uint32)
        self.counts.fill(0)

    def _count(self) -> None:
        if self._unread:
            self.flush()
        if not self._waiting:
            return
        tops = power_tops(self._maxima)
        if self.counts is not None:
            rebin(self.counts, self.tops, tops)
        a, self._waiting = self._waiting, []  # counted together, not copied into one array
        self._allocate(len(tops), a[0])
        self.counts, self.tops = row_counts(a, self.per_channel, tops, self.counts), tops

    def on(self, tops: np.ndarray) -> np.ndarray:
        """The counts on the (larger or equal) power-of-two ranges ``tops``."""
        self._count()
        if self.counts is None:
            return np.zeros((len(tops), BINS), np.int64)
        self.counts, self.tops = rebin(self.counts, self.tops, tops), tops
        return self.counts


class Histograms:
    """Per layer (or channel) maxima and, where ``counts``, histograms of the positive
    activations, over the calibration workers' shards: maxima merge by maximum, counts by sum
    (exact). ``tops``: each row's histogram range, its maximum where the pass could keep the
    activations, else the power of two above it (module docstring)."""

    def __init__(self, workers, names: list[str], per_channel: bool, counts: bool = True):
        self.names = names
        self.maxima: dict[str, np.ndarray] = {}
        kept = True
        for part, whole in workers.call("statistics", names, per_channel, counts):
            kept = kept and whole
            for name, peak in part.items():
                self.maxima[name] = np.maximum(self.maxima[name], peak) if name in self.maxima else peak
        if not self.maxima:
            raise CalibrationError("calibration data is empty")
        self.tops = self.maxima if kept else {name: power_tops(m) for name, m in self.maxima.items()}
        self._workers, self._per_channel = workers, per_channel
        self._counts: dict[str, np.ndarray] | None = None

    @property
    def counts(self) -> dict[str, np.ndarray]:
        """name -> [rows, BINS] counts of positive values in bins of width top/BINS (merged on demand)."""
        if self._counts is None:
            counts: dict[str, np.ndarray] = {}
            for part in self._workers.call("counts", self.names, self._per_channel, self.tops):
                for name, c in part.items():
                    if name in counts:  # shards' counts add up past 32 bits
                        if counts[name].dtype != np.int64:
                            counts[name] = counts[name].astype(np.int64)
                        counts[name] += c
                    else:  # the first part's own array: no second copy of every count (unless read-only, from Ray)
                        counts[name] = c if c.flags.writeable else c.copy()
            for name in self.names:
                counts.setdefault(name, np.zeros((len(self.tops[name]), BINS), dtype=np.int64))
            self._counts = counts
        return self._counts

    def centers(self, name: str) -> np.ndarray:
        """[rows, BINS] bin centres."""
        width = self.tops[name][:, None] / BINS
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
        width = self.tops[name] / BINS
        value = np.where(total > 0, (idx + np.clip(frac, 0, 1)) * width, 0.0)
        if self.tops is not self.maxima:  # a power-of-two range: its last bin reaches past the maximum
            value = np.minimum(value, self.maxima[name])
        return value
