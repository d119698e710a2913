"""Thresholds equal the statistics they are defined by, streamed over batches."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnx2snn
from onnx2snn import CalibrationError, ConfigError
from onnx2snn.calibration import parse_method
from tests.helpers import const, make_model, mlp, run_onnx, tensor


def hidden_activations(model, x):
    """The ANN's activation 'a' computed directly."""
    probe = helper.make_tensor_value_info("a", 1, None)
    m = type(model)()
    m.CopyFrom(model)
    m.graph.output.append(probe)
    return run_onnx(m, {"x": x})[1]


@pytest.fixture
def data():
    return np.random.default_rng(3).normal(size=(500, 8)).astype(np.float32)


def test_max_is_the_maximum_activation_per_layer_and_channel(data):
    model = mlp()
    a = hidden_activations(model, data)
    layer = onnx2snn.convert(model, data, "max", batch_size=37, per_channel=False, corrections=()).thresholds["act1"]
    assert layer.shape == () and layer == pytest.approx(a.max(), rel=1e-6)
    channel = onnx2snn.convert(model, data, "max", per_channel=True, batch_size=37).thresholds["act1"]
    expected = a.max(axis=0)
    expected = np.where(expected > 0, expected, a.max())  # a channel that never fires keeps the layer's
    np.testing.assert_allclose(channel, expected, rtol=1e-6)


@pytest.mark.parametrize("p", [50.0, 99.0, 99.9])
def test_percentile_matches_numpy_on_positive_activations(data, p):
    model = mlp()
    a = hidden_activations(model, data)
    theta = onnx2snn.convert(
        model, data, f"percentile:{p}", batch_size=64, per_channel=False, corrections=()
    ).thresholds["act1"]
    expected = np.percentile(a[a > 0], p)
    assert float(theta) == pytest.approx(expected, abs=float(a.max()) / 4096 * 2 + 1e-6)


def test_thresholds_do_not_depend_on_batch_size(data):
    model = mlp()
    a = onnx2snn.convert(model, data, "percentile:99", per_channel=True, batch_size=500).thresholds["act1"]
    b = onnx2snn.convert(model, data, "percentile:99", per_channel=True, batch_size=7).thresholds["act1"]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_clip_caps_the_threshold(data):
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
        helper.make_node("Clip", ["h", "lo", "hi"], ["a"], name="relu6"),
        helper.make_node("Gemm", ["a", "w2"], ["y"], name="head", transB=1),
    ]
    rng = np.random.default_rng(0)
    model = make_model(
        nodes,
        [tensor("x", ["N", 8])],
        [tensor("y", ["N", 2])],
        [const("w", rng.normal(0, 3, (4, 8))), const("lo", 0.0), const("hi", 6.0), const("w2", np.ones((2, 4)))],
    )
    assert float(onnx2snn.convert(model, data, "max", per_channel=False, corrections=()).thresholds["relu6"]) == 6.0


def test_calibration_subset_is_seeded(data):
    model = mlp()
    a = onnx2snn.convert(
        model, data, "max", calibration_samples=50, seed=1, per_channel=False, corrections=()
    ).thresholds["act1"]
    b = onnx2snn.convert(
        model, data, "max", calibration_samples=50, seed=1, per_channel=False, corrections=()
    ).thresholds["act1"]
    c = onnx2snn.convert(
        model, data, "max", calibration_samples=50, seed=2, per_channel=False, corrections=()
    ).thresholds["act1"]
    assert a == b and a != c


def test_bad_calibration_data_and_methods(data):
    model = mlp()
    with pytest.raises(CalibrationError, match="no samples"):
        onnx2snn.convert(model, data[:0])
    bad = data.copy()
    bad[3, 2] = np.nan
    with pytest.raises(CalibrationError, match="1 NaN"):
        onnx2snn.convert(model, bad)
    with pytest.raises(onnx2snn.DataError, match=r"shape \[500, 5\] does not match model input 'x' of shape \[N, 8\]"):
        onnx2snn.convert(model, data[:, :5])
    for method in ["median", "percentile:abc", "percentile:101"]:
        with pytest.raises(ConfigError):
            parse_method(method)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("method", ["max", "default"])
@pytest.mark.parametrize("running", [False, True])
def test_an_activation_that_overflows_is_named(data, per_channel, method, running, monkeypatch):
    """Activations are told non-finite by their maxima (a Relu's or Clip(0, m)'s values are never
    below 0, so a NaN or inf is in its row's maximum): an overflowing layer is refused by name,
    also where its batches are counted as they come (``running``: the maxima from the kernel)."""
    from onnx2snn.calibration import shards, statistics

    if running:
        monkeypatch.setattr(shards, "CACHE_BUDGET", 0)
        monkeypatch.setattr(statistics, "GROUP", 1)
    model = mlp()
    w1 = next(i for i in model.graph.initializer if i.name == "w1")
    w1.CopyFrom(const("w1", np.full((16, 8), 3e38)))  # sums of such products pass float32's range
    options = {} if method == "default" else {"method": method}
    with pytest.raises(CalibrationError, match="activation 'a' has non-finite values"):
        onnx2snn.convert(model, np.abs(data) + 1, per_channel=per_channel, **options)


def test_the_statistics_pass_shrinks_its_batch_to_its_budget(digits_cnn, digits, monkeypatch):
    """Every activation of a sample is an output of the ANN's statistics pass, so a batch of
    large samples is cut to STATISTICS_BUDGET bytes of them (ResNet-50 at 224x224 and batch
    128: 12 GB): the memory does not grow with the calibration data, the thresholds do not move."""
    from onnx2snn.calibration import statistics

    x = digits[0][:200]
    wide = {m: onnx2snn.convert(digits_cnn, x, m, corrections=()).thresholds for m in ("max", "percentile:99.9")}
    seen = []
    stream = statistics.batches
    monkeypatch.setattr(statistics, "batches", lambda f, size, static: seen.append(size) or stream(f, size, static))
    monkeypatch.setattr(statistics, "STATISTICS_BUDGET", 20_000)  # bytes: a few samples of this CNN
    for method, thresholds in wide.items():
        snn = onnx2snn.convert(digits_cnn, x, method, corrections=())
        assert snn.thresholds.keys() == thresholds.keys()
        assert all(np.array_equal(snn.thresholds[k], thresholds[k]) for k in thresholds)
        # the shape probe still runs its whole probe batch: no batch axis taken for a fixed size
        batch = [v.type.tensor_type.shape.dim[0] for v in snn.proto.graph.value_info if v.type.tensor_type.shape.dim]
        assert batch and not any(d.HasField("dim_value") for d in batch)
    assert seen and min(seen) >= 1 and sorted(seen)[len(seen) // 2] < 20


@pytest.mark.parametrize("timesteps, v_init", [(1, 0.5), (4, 0.0), (16, 0.5), (64, 1.0)])
def test_mmse_by_running_sums_picks_the_per_bin_formulas_threshold(timesteps, v_init):
    """mmse.py sums each level of the staircase from running sums; the definition sums every
    bin: the same candidate wins on every row (random histograms, empty rows included)."""
    from onnx2snn.calibration.mmse import CANDIDATES, STEP, mmse_thresholds
    from onnx2snn.calibration.statistics import BINS

    rng = np.random.default_rng(timesteps)
    rows = 40
    decay = np.exp(-np.arange(BINS)[None, :] / rng.uniform(30, 3000, (rows, 1)))
    counts = rng.poisson(rng.uniform(0.01, 20, (rows, 1)) * decay).astype(np.int64)
    counts[:3] = 0
    maxima = np.where(counts.sum(1) > 0, rng.uniform(0.1, 8, rows), 0).astype(np.float32)

    class Hist:
        def __init__(self):
            self.counts, self.maxima, self.tops = {"a": counts}, {"a": maxima}, {"a": maxima}

        def centers(self, name):
            return (np.arange(BINS)[None, :] + 0.5) * (maxima[:, None] / BINS)

    a = Hist().centers("a")
    expected = np.zeros(rows)
    for r in np.nonzero(maxima)[0]:
        errors = []
        for i in range(CANDIDATES):
            theta = float(maxima[r] * np.float32(1.0 - STEP * i))
            q = theta / timesteps * np.clip(np.floor(a[r] * timesteps / theta + v_init), 0, timesteps)
            errors.append((counts[r] * (a[r] - q) ** 2).sum())
        expected[r] = maxima[r] * np.float32(1.0 - STEP * int(np.argmin(errors)))
    got = mmse_thresholds(Hist(), "a", timesteps, v_init)
    assert np.array_equal(got.astype(np.float32), expected.astype(np.float32))


@pytest.mark.parametrize("per_channel", [True, False])
def test_compiled_histogram_counts_batches_together_empty_ones_included(per_channel):
    """The kernel counts several batches of one layer without copying them together: the counts
    of their concatenation, whichever of them is empty."""
    from onnx2snn.calibration import statistics
    from onnx2snn.runtime import kernel

    if not kernel.available():
        pytest.skip("the compiled kernel is not built")
    rng = np.random.default_rng(5)
    parts = [rng.normal(size=(n, 3, 9, 7)).astype(np.float32) for n in (0, 5, 0, 17)]
    whole = np.concatenate(parts)
    top = statistics.power_tops(statistics.row_maxima(whole, per_channel))
    expected = statistics.row_counts(whole, per_channel, top)
    assert expected.sum() == (whole > 0).sum()
    for batches in (parts, parts[1:], parts[::-1]):
        np.testing.assert_array_equal(kernel.histogram(batches, per_channel, top, statistics.BINS), expected)


@pytest.mark.parametrize("timesteps, v_init", [(1, 0.0), (7, 0.25), (16, 0.5), (32, 1.0), (300, 0.5)])
def test_compiled_mmse_picks_numpys_thresholds_bit_for_bit(timesteps, v_init):
    """The kernel's MMSE repeats numpy's arithmetic (mmse._rows) value by value: the same
    thresholds bit for bit, on ranges above the maxima (power-of-two tops) and at them, with
    empty rows, dense, sparse and few-bin histograms, and more levels than numpy sums in one block (300)."""
    from onnx2snn.calibration import mmse
    from onnx2snn.runtime import kernel

    if not kernel.available():
        pytest.skip("the compiled kernel is not built")
    rng = np.random.default_rng(timesteps)
    for bins in (1, 64, 4096):
        rows = 30
        dense = rng.integers(0, 1000, (rows, bins))
        sparse = (rng.exponential(1.0, (rows, bins)) ** 3 * 100).astype(np.int64) * (rng.random((rows, bins)) < 0.3)
        few = np.zeros((rows, bins), np.int64)  # a few full bins: which level each falls in decides
        few[np.arange(rows)[:, None], rng.integers(0, bins, (rows, 4))] = rng.integers(1, 10**6, (rows, 4))
        for counts in (dense, sparse, few):
            top = (rng.random(rows) * 10).astype(np.float32)
            top[:3] = 0.0
            for grid in (top, (2.0 ** np.ceil(np.log2(np.maximum(top, 1e-3)))).astype(np.float32)):
                expected = mmse._rows(counts, top, grid, timesteps, v_init)
                for kept in (counts, counts.astype(np.uint32)):  # 64- or 32-bit counts
                    got = kernel.mmse(kept, top, grid, mmse.FACTORS, timesteps, v_init)
                    assert np.array_equal(got.view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize("per_channel", [True, False])
def test_counts_added_batch_by_batch_are_the_counts_of_all_the_data(per_channel, monkeypatch):
    """The statistics pass adds each batch's counts into one array (kernel or numpy): the same
    counts as one pass over all the data, and the same in either implementation."""
    from onnx2snn.calibration import statistics
    from onnx2snn.runtime import kernel

    a = np.random.default_rng(0).normal(size=(12, 5, 3, 3)).astype(np.float32)
    top = statistics.row_maxima(a, per_channel)
    whole = statistics.row_counts(a, per_channel, top)
    out = statistics.row_counts(a[:7], per_channel, top)
    assert statistics.row_counts(a[7:], per_channel, top, out) is out
    assert np.array_equal(out, whole) and whole.sum() == (a > 0).sum()
    monkeypatch.setattr(kernel, "available", lambda: False)
    out = statistics.row_counts(a[:7], per_channel, top)
    assert np.array_equal(statistics.row_counts(a[7:], per_channel, top, out), whole)


@pytest.mark.parametrize("size", [(9, 7), (64, 64), (128, 100)])
@pytest.mark.parametrize("vector", [True, False])
@pytest.mark.parametrize("wide", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_running_histograms_in_one_read_equal_numpys_steps(per_channel, wide, vector, size, monkeypatch):
    """A batch counted as it comes (RunningCounts.take): its maxima, the running maxima,
    their power-of-two ranges, the counts so far merged onto grown ranges and the batch counted,
    in one read of it, are what row_maxima, np.maximum, power_tops, rebin and row_counts give in
    turn, batch after batch (ranges that grow by one and by many powers of two, rows of zeros,
    tiny, huge, past-the-largest-range and subnormal maxima), for rows of fewer values than bins,
    of more (counted in one copy) and of more than 8 x bins (in four)."""
    from onnx2snn.calibration import statistics
    from onnx2snn.runtime import kernel

    if not kernel.available():
        pytest.skip("the compiled kernel is not built")
    monkeypatch.setattr(kernel, "VECTOR", vector)
    rng = np.random.default_rng(5)
    counts = np.zeros((4 if per_channel else 1, statistics.BINS), np.int64 if wide else np.uint32)
    expected = counts.astype(np.int64)
    running = tops = None
    for k, scale in enumerate([1e-3, 2e-3, 1.0, 1.0, 3e5, 1e-30]):
        a = np.maximum(rng.normal(size=(3, 4, *size)) * scale, 0).astype(np.float32)
        a[:, 1] = 0.0  # a channel of zeros: no range, no counts
        if k == 4:
            a[1, 3, 0, 0] = 3e38  # above 2^127: the largest range
        if k == 5:
            a[0, 2, 0, 0] = 1e-40  # subnormal, in a channel whose range was set before
        batch, new, got_tops = kernel.histogram_running(
            a,
            per_channel,
            running,
            np.zeros(len(counts), np.float32) if tops is None else tops,
            counts,
            statistics._EXPONENTS,
        )
        peak = statistics.row_maxima(a, per_channel)
        np.testing.assert_array_equal(batch, peak)
        maxima = peak if running is None else np.maximum(running, peak)
        np.testing.assert_array_equal(new, maxima)
        want = statistics.power_tops(maxima)
        np.testing.assert_array_equal(got_tops, want)
        if tops is not None:
            statistics.rebin(expected, tops, want)
        expected = statistics.row_counts(a, per_channel, want, expected)
        np.testing.assert_array_equal(counts, expected)
        running, tops = new, got_tops
    assert expected.sum() == counts.sum() > 0
    a[0, 0, 0, 0] = np.nan
    assert np.isnan(kernel.histogram_running(a, per_channel, running, tops, counts, statistics._EXPONENTS)[0][0])


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("size", [(40, 50), (100, 90)])
def test_compiled_histogram_counts_as_numpy_does_on_large_rows(per_channel, size, monkeypatch):
    """The kernel bins blocks of a row's values at once where a row has more values than bins
    (in one copy of the row, or in four from 8 x bins values: both sizes here): the same counts
    as numpy's definition, values at and far above a row's top included (they go to its last
    bin), zeros and negatives left out."""
    from onnx2snn.calibration import statistics
    from onnx2snn.runtime import kernel

    if not kernel.available():
        pytest.skip("the compiled kernel is not built")
    rng = np.random.default_rng(3)
    shape = (3, 2, *size)
    a = (rng.normal(size=shape) * 10.0 ** rng.integers(-2, 3, shape)).astype(np.float32)
    a[0, 0, :5] = 0.0
    a[1, 1, 0, :3] = 3e38  # far above the top
    top = np.float32(0.5) * statistics.row_maxima(np.where(a < 1e30, a, 0), per_channel)
    top[-1] = statistics.row_maxima(a, per_channel)[-1]  # a value exactly at the top
    compiled = statistics.row_counts(a, per_channel, top)
    monkeypatch.setattr(kernel, "VECTOR", False)  # the portable loop, where the vector one ran
    np.testing.assert_array_equal(compiled, statistics.row_counts(a, per_channel, top))
    monkeypatch.setattr(kernel, "available", lambda: False)
    np.testing.assert_array_equal(compiled, statistics.row_counts(a, per_channel, top))
    assert compiled.sum() == (a > 0).sum()
