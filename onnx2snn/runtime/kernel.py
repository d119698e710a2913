"""The compiled IF kernel (if_kernel.c): one pass over T steps of an IF layer (its spikes, their
counts or their bits), the stored spikes unpacked, and calibration's histograms and MMSE search.

Built at install as an optional extension (setup.py); where it is absent (no C compiler when
the package was installed), ``available()`` is False and sessions keep to the ONNX forms."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

_MODULE = "onnx2snn.runtime._if_kernel"


@functools.cache
def _library() -> ctypes.CDLL | str:
    """The loaded library, or why it is not there."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        return "not built: reinstall onnx2snn where a C compiler is available"
    try:
        lib = ctypes.CDLL(str(Path(spec.origin)))
    except OSError as e:
        return f"cannot be loaded ({e})"
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.if_scan.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, ctypes.c_int]
    lib.if_scan.restype = None
    lib.if_counts.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, ctypes.c_int, i64, i64, ctypes.c_int]
    lib.if_counts.restype = ctypes.c_int
    lib.if_bits.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, ctypes.c_int, i64, i64, ctypes.c_int]
    lib.if_bits.restype = ctypes.c_int
    lib.if_scan_blocked.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, ctypes.c_int, ctypes.c_int]
    lib.if_scan_blocked.restype = None
    lib.unpack_spikes.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, i64]
    lib.unpack_spikes.restype = None
    lib.histogram.argtypes = [ptr, i64, i64, i64, ctypes.c_int, ptr, ptr, ctypes.c_int, i64, ctypes.c_int]
    lib.histogram.restype = ctypes.c_int
    flag = ctypes.c_int
    lib.histogram_running.argtypes = [ptr, i64, i64, i64, flag, ptr, flag, ptr, ptr, ptr, flag, i64] + [flag] * 3
    lib.histogram_running.restype = ctypes.c_int
    lib.mmse.argtypes = [ptr, ctypes.c_int, i64, i64, ptr, ptr, ptr, i64, i64, ctypes.c_double, ptr]
    lib.mmse.restype = ctypes.c_int
    return lib


def available() -> bool:
    return not isinstance(_library(), str)


def why_unavailable() -> str:
    lib = _library()
    return lib if isinstance(lib, str) else ""


def _loaded() -> ctypes.CDLL:
    lib = _library()
    if isinstance(lib, str):
        raise RuntimeError(f"the compiled IF kernel is {lib}")
    return lib


def _layout(step_shape: tuple[int, ...], theta: np.ndarray) -> tuple[int, int, int, int]:
    """(rows, channels, inner, theta_mode) of one step's neurons, [N, C, ...] or [N, F]."""
    n = step_shape[0]
    channels = step_shape[1] if len(step_shape) > 1 else 1
    if theta.size not in (1, channels):
        raise ValueError(f"threshold of {theta.size} values for {channels} channels")
    inner = int(np.prod(step_shape[2:])) if len(step_shape) > 2 else 1
    if inner == 1:  # [N, F] or [N, C, 1, 1]
        # a row per sample, a threshold per value or one for all (a row a neuron, as a dense layer
        # with one threshold had it, took 12x as long: 58 against 5 ms for [64, 4096] x 32 steps)
        return n, 1, channels, 2 if theta.size > 1 else 0
    return n * channels, channels, inner, int(theta.size > 1)


# a call's values from which calibration's kernels split their rows among threads
PARALLEL_FROM = 1 << 20
# the kernel's loops in vector instructions where the processor has them (AVX2): calibration's IF
# counts and bits and the step runtime's blocked IF layers (read when a Stepper is made) with the
# membranes held in registers over the steps, the histogram's bins with only the positive values'
# kept; False: the portable loops (the same results)
VECTOR = True


def threads() -> int:
    """How many threads calibration's kernels use: the CPUs this process may run on (within its
    container's CPU quota, where cgroup v2 tells one), at most OMP_NUM_THREADS where set (a
    distributed worker's share)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:  # "max 100000", or "200000 100000": two CPUs' worth
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // max(int(period), 1)))
    except (OSError, ValueError):
        pass
    limit = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return max(1, min(cpus, int(limit))) if limit.isdigit() and int(limit) > 0 else max(1, cpus)


@functools.cache
def _pool(count: int, pid: int) -> ThreadPoolExecutor:
    """``count`` threads of this process (``pid``: a forked child makes its own, the parent's
    threads are not there)."""
    return ThreadPoolExecutor(count, thread_name_prefix="onnx2snn-kernel")


def _in_parts(rows: int, values: int, call: Callable[[int, int], int | None], align: int = 1) -> list[int | None]:
    """``call(first, last)`` over rows 0 to ``rows`` - 1 in parts run side by side (ctypes lets go
    of the interpreter's lock in the call) where the ``values`` are many and more than one CPU is
    there; the parts' first rows multiples of ``align``. The statuses, part by part."""
    count = min(threads(), rows // max(align, 1)) if values >= PARALLEL_FROM else 1
    if count <= 1:
        return [call(0, rows)]
    cuts = [min(rows, -(-rows * i // count // align) * align) for i in range(count + 1)]
    parts = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
    futures = [_pool(count, os.getpid()).submit(call, a, b) for a, b in parts[1:]]
    try:
        first = call(*parts[0])
    finally:  # the other parts write into the caller's buffers: never leave them running
        wait(futures)
    return [first] + [f.result() for f in futures]


def _buffer(array: np.ndarray, shape: tuple[int, ...], dtype: type = np.float32) -> None:
    if array.dtype != dtype or not array.flags["C_CONTIGUOUS"] or array.shape != shape:
        name = np.dtype(dtype).name
        raise ValueError(f"the kernel's buffers must be C-contiguous {name} arrays of shape {shape}")


def _scan(
    kind: str, x: np.ndarray, threshold: np.ndarray, start: np.ndarray, reset_to_zero: bool, steps: int | None
) -> np.ndarray:
    """if_scan's layer run by the kernel's function ``kind``: "if_scan" writes the spikes
    [T, N, ...], "if_counts" counts each neuron's firings [N, ...], "if_bits" packs the spikes
    into bits (if_bits)."""
    lib = _loaded()
    x = np.ascontiguousarray(x, dtype=np.float32)
    step_shape = x.shape if steps is not None else x.shape[1:]
    theta = np.ascontiguousarray(np.asarray(threshold, np.float32).reshape(-1))
    rows, channels, inner, mode = _layout(step_shape, theta)
    membrane = np.array(np.broadcast_to(np.asarray(start, np.float32), step_shape), np.float32, order="C")
    stride = 0 if steps is not None else rows * inner  # one current for every step, or one a step
    steps = x.shape[0] if steps is None else steps
    if kind == "if_scan":
        out = np.empty((steps, *step_shape), np.float32)
    elif kind == "if_bits":
        out = np.zeros(-(-steps * rows * inner // 8), np.uint8)
    else:
        out = np.zeros(step_shape, np.int32)
    args = (x.ctypes.data, out.ctypes.data, membrane.ctypes.data, theta.ctypes.data)
    args += (steps, stride, rows, channels, inner, mode, int(reset_to_zero))
    if kind == "if_scan":  # the step runtime's: all rows, no status
        lib.if_scan(*args)
        return out
    align = 1  # bits: a part starts on a byte at every step, or the parts would share bytes
    if kind == "if_bits":
        align = 8 // int(np.gcd(inner, 8)) if (rows * inner) % 8 == 0 else rows
    for status in _in_parts(rows, x.size, lambda a, b: getattr(lib, kind)(*args, a, b, int(VECTOR)), align):
        _check(status, kind)
    return out


def if_scan(
    x: np.ndarray, threshold: np.ndarray, start: np.ndarray, reset_to_zero: bool, steps: int | None = None
) -> np.ndarray:
    """Spikes [T, N, ...] of an IF layer driven by currents ``x`` [T, N, ...] (or, with
    ``steps``, by the one current ``x`` [N, ...] at each of ``steps`` steps), its membranes
    starting at ``start`` (broadcastable to [N, ...]); ``threshold`` a scalar or one per
    channel (axis 1 of [N, ...])."""
    return _scan("if_scan", x, threshold, start, reset_to_zero, steps)


def if_bits(
    x: np.ndarray, threshold: np.ndarray, start: np.ndarray, reset_to_zero: bool, steps: int | None = None
) -> np.ndarray:
    """if_scan's spikes [T, N, ...] as bits, without the float spikes in between: bit i of the
    flattened spikes set where it fired, as ``np.packbits(spikes > 0, bitorder="little")``
    packs them (unpack_spikes' input)."""
    return _scan("if_bits", x, threshold, start, reset_to_zero, steps)


def if_counts(
    x: np.ndarray, threshold: np.ndarray, start: np.ndarray, reset_to_zero: bool, steps: int | None = None
) -> np.ndarray:
    """How many of the steps each neuron of if_scan's layer fires, [N, ...] int32: its spikes
    summed over the steps (each is its threshold), without them."""
    return _scan("if_counts", x, threshold, start, reset_to_zero, steps)


class Stepper:
    """One IF layer advanced some steps at a time on buffers allocated once: ``membrane``
    [n, ...] updated in place, ``spikes`` [k * n, ...] written (k steps one after the other),
    ``x`` [k * n, ...] read, or with ``constant`` [n, ...], the same current every step.
    ``block``: the tensors are in onnxruntime's blocked layout (runtime/blocked.py), [n, C', H,
    W] laid out [n, C'/block, H, W, block], ``threshold`` one value or one per channel (the C'
    - C padding channels get the one value, or 1: positive, so they never fire on their zero
    currents from a zero membrane)."""

    def __init__(
        self,
        x: np.ndarray,
        spikes: np.ndarray,
        membrane: np.ndarray,
        threshold: np.ndarray,
        reset_to_zero: bool,
        block: int | None = None,
        constant: bool = False,
    ):
        n, step_shape = membrane.shape[0], membrane.shape
        self.capacity = spikes.shape[0] // max(n, 1)  # the most steps one call can take
        _buffer(membrane, step_shape)
        _buffer(spikes, (self.capacity * n, *step_shape[1:]))
        _buffer(x, step_shape if constant else spikes.shape)
        values = np.asarray(threshold, np.float32).reshape(-1)
        if block is None:
            theta = np.ascontiguousarray(values)
            rows, channels, inner, mode = _layout(step_shape, theta)
            self._call = _loaded().if_scan
            shape_args: tuple[int, ...] = (rows, channels, inner, mode)
        else:
            channels = step_shape[1] if len(step_shape) == 4 else 0
            if not channels or channels % block:
                raise ValueError(f"a blocked tensor is [n, C', H, W], C' a multiple of {block}: got {step_shape}")
            if values.size not in range(1, channels + 1):
                raise ValueError(f"threshold of {values.size} values for {channels} blocked channels")
            theta = np.ones(channels, np.float32)
            theta[: values.size if values.size > 1 else channels] = values
            rows, inner = n * (channels // block), block * step_shape[2] * step_shape[3]
            self._call = _loaded().if_scan_blocked
            shape_args = (rows, channels // block, inner, block)
        self._keep = (x, spikes, membrane, theta)  # the pointers below stay valid while these live
        self._pointers = (x.ctypes.data, spikes.ctypes.data, membrane.ctypes.data, theta.ctypes.data)
        self._stride = 0 if constant else membrane.size
        self._rest = (*shape_args, int(reset_to_zero)) + ((int(VECTOR),) if block is not None else ())

    def __call__(self, steps: int = 1) -> None:
        if not 1 <= steps <= self.capacity:
            raise ValueError(f"{steps} steps: the buffers hold 1 to {self.capacity}")
        self._call(*self._pointers, steps, self._stride, *self._rest)


def unpack_spikes(
    bits: np.ndarray, shape: tuple[int, ...], threshold: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Spikes [T, N, ...] of ``shape`` from ``if_bits``' bits: 0, or the threshold (a scalar
    or one per channel, axis 1 of [N, ...]) where it fired; written into ``out`` where given."""
    theta = np.ascontiguousarray(np.asarray(threshold, np.float32).reshape(-1))
    rows, channels, inner, mode = _layout(tuple(shape[1:]), theta)
    spikes = np.empty(shape, np.float32) if out is None else out
    _buffer(spikes, tuple(shape))
    bits = np.ascontiguousarray(bits, dtype=np.uint8)
    args = (bits.ctypes.data, spikes.ctypes.data, theta.ctypes.data, shape[0], rows, channels, inner, mode)
    _in_parts(rows, spikes.size, lambda a, b: _loaded().unpack_spikes(*args, a, b))
    return spikes


def _samples(a: np.ndarray | Sequence[np.ndarray], per_channel: bool) -> tuple[list[np.ndarray], np.ndarray, int, int]:
    """The batches of ``a`` as float32 C arrays, each sample's address, batch after batch (int64),
    and (channels, inner, values a sample): what the histogram kernels read."""
    parts = [np.ascontiguousarray(p, dtype=np.float32) for p in ([a] if isinstance(a, np.ndarray) else a)]
    first = parts[0]
    if any(p.shape[1:] != first.shape[1:] for p in parts):
        raise ValueError("a histogram's batches must hold samples of one shape")
    channels = first.shape[1] if per_channel and first.ndim >= 2 else 1
    sample = int(np.prod(first.shape[1:]))  # values a sample, alike in every part (an empty one too)
    addresses = np.concatenate(
        [p.ctypes.data + np.arange(len(p), dtype=np.int64) * (sample * 4) for p in parts if len(p)]
        or [np.zeros(0, np.int64)]
    )
    return parts, addresses, channels, sample // channels


def _rows_of(samples: np.ndarray, first: int, last: int, inner: int, per_channel: bool) -> tuple[np.ndarray, tuple]:
    """The histogram kernels' first arguments for rows ``first`` to ``last`` - 1 of the samples
    at ``samples`` (each sample's address moved to its row ``first``), and the array of those
    addresses (alive while the kernel reads it)."""
    starts = samples + first * inner * 4 if first else samples
    return starts, (starts.ctypes.data, len(starts), last - first, inner, int(per_channel))


def _counts(out: np.ndarray | None, rows: int, bins: int) -> tuple[np.ndarray, bool]:
    counts = np.zeros((rows, bins), np.int64) if out is None else out
    wide = counts.dtype == np.int64
    _buffer(counts, (rows, bins), np.int64 if wide else np.uint32)
    return counts, wide


def histogram(
    a: np.ndarray | Sequence[np.ndarray],
    per_channel: bool,
    tops: np.ndarray,
    bins: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """[rows, bins] counts of the positive values of ``a`` [n, C, ...] (or of several such
    batches together, not copied into one) per channel (or for the whole layer) in bins of width
    top/bins (values at or above a row's top in its last bin), as calibration/statistics.py's
    row_counts defines them; added into ``out`` (C-contiguous int64, or uint32 where the caller
    knows that no count can pass 2^32 - 1) where given."""
    if bins < 1:
        raise ValueError(f"a histogram needs at least one bin, got {bins}")
    parts, samples, channels, inner = _samples(a, per_channel)
    top = np.ascontiguousarray(tops, dtype=np.float32).reshape(-1)
    if len(top) != channels:
        raise ValueError(f"{len(top)} histogram ranges for {channels} rows")
    counts, wide = _counts(out, len(top), bins)
    # the kernel counts a call's values of a row in 32-bit counters: at most 2^31 values a call
    step = max(1, (1 << 31) // max(channels * inner, 1))
    width = counts.itemsize * bins

    def rows(chunk: np.ndarray, first: int, last: int) -> int:
        """The counts of rows ``first`` to ``last`` - 1."""
        starts, head = _rows_of(chunk, first, last, inner, per_channel)
        return _loaded().histogram(
            *head,
            top.ctypes.data + first * 4,
            counts.ctypes.data + first * width,
            int(wide),
            bins,
            int(VECTOR),
        )

    for start in range(0, len(samples), step):
        chunk = samples[start : start + step]
        for status in _in_parts(len(top), len(chunk) * channels * inner, lambda a, b, c=chunk: rows(c, a, b)):
            _check(status, "histogram")
    return counts


def histogram_running(
    a: np.ndarray,
    per_channel: bool,
    running: np.ndarray | None,
    tops: np.ndarray,
    counts: np.ndarray,
    exponents: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch ``a`` [n, C, ...] (n >= 1, fewer than 2^31 values a row) added to running
    histograms (calibration/statistics.py, RunningCounts) in one read of it: per row its
    maximum, the running maximum with it (``running``: the maxima so far, None for none), the
    power of two above that (exponent within ``exponents``), the ``counts`` so far [rows, bins]
    (on the ranges ``tops``, 0 where none) merged onto it where it grew, and the batch counted
    on it: numpy's row maxima, np.maximum, power_tops, rebin and row_counts in turn, the same
    numbers. Returns (the batch's maxima, the running maxima, the new ranges); ``counts`` is
    updated in place."""
    parts, samples, channels, inner = _samples(a, per_channel)
    if not len(samples) or len(samples) * inner >= 1 << 31:  # inner: a row's values a sample
        raise ValueError("histogram_running takes a batch of 1 to 2^31 - 1 values a row")
    rows_, bins = counts.shape
    if rows_ != channels:
        raise ValueError(f"{rows_} rows of counts for {channels} rows of values")
    counts, wide = _counts(counts, rows_, bins)
    if bins & (bins - 1):
        raise ValueError(f"running histograms need a power of two bins, got {bins}")
    top = np.array(tops, np.float32).reshape(rows_)
    new = np.zeros(rows_, np.float32) if running is None else np.array(running, np.float32).reshape(rows_)
    batch = np.empty(rows_, np.float32)
    width = counts.itemsize * bins

    def rows(first: int, last: int) -> int:
        starts, head = _rows_of(samples, first, last, inner, per_channel)
        return _loaded().histogram_running(
            *head,
            new.ctypes.data + first * 4,
            int(running is not None),
            top.ctypes.data + first * 4,
            batch.ctypes.data + first * 4,
            counts.ctypes.data + first * width,
            int(wide),
            bins,
            int(VECTOR),
            *exponents,
        )

    for status in _in_parts(rows_, len(samples) * channels * inner, rows):
        _check(status, "histogram")
    return batch, new, top


def mmse(
    counts: np.ndarray, tops: np.ndarray, grids: np.ndarray, factors: np.ndarray, timesteps: int, v_init: float
) -> np.ndarray:
    """Per row of ``counts`` [rows, bins] (bins of width grid/bins): the threshold among
    ``top * factor`` (float32) of least T-step quantization error, as calibration/mmse.py's
    ``_rows`` computes it, bit for bit; 0 where the top is not positive. ``counts``: int64 or
    uint32."""
    counts = np.ascontiguousarray(counts, dtype=np.uint32 if counts.dtype == np.uint32 else np.int64)
    rows, bins = counts.shape
    top = np.ascontiguousarray(tops, dtype=np.float32).reshape(rows)
    grid = np.ascontiguousarray(grids, dtype=np.float32).reshape(rows)
    factors = np.ascontiguousarray(factors, dtype=np.float32)
    best = np.empty(rows, np.float64)

    def part(first: int, last: int) -> int:
        return _loaded().mmse(
            counts.ctypes.data + first * bins * counts.itemsize,
            int(counts.dtype == np.int64),
            last - first,
            bins,
            top.ctypes.data + first * 4,
            grid.ctypes.data + first * 4,
            factors.ctypes.data,
            len(factors),
            timesteps,
            float(v_init),
            best.ctypes.data + first * 8,
        )

    # a row's search costs about what 16 of a scan's values per count do
    for status in _in_parts(rows, 16 * counts.size, part):
        _check(status, "MMSE")
    return best


def _check(status: int, what: str) -> None:
    """The kernel's status: 0, or -1 where it could not allocate its working memory."""
    if status == -1:
        raise MemoryError(f"the compiled kernel's {what} could not allocate its working memory")
    if status != 0:
        raise ValueError(f"the compiled kernel's {what} refused its arguments (status {status})")
