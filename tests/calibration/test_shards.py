"""Calibration's statistics merge exactly: thresholds and corrections computed on the data cut
into shards (the workers of a distributed run; here in one process) are bit-identical to those
of one shard, whatever the number of shards."""

from __future__ import annotations

import numpy as np
import pytest

import onnx2snn
from onnx2snn.calibration import calibrate, correct_layers
from onnx2snn.calibration.reduce import ExactSum
from onnx2snn.calibration.shards import CalibrationShard, LocalWorkers
from onnx2snn.data import Shard
from onnx2snn.graph import import_graph
from onnx2snn.neuron import Neurons
from onnx2snn.passes import canonicalize
from onnx2snn.runtime import kernel


def test_exact_sums_do_not_depend_on_the_order_of_their_parts():
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 1, (300, 5)) * 10.0 ** rng.integers(-8, 8, (300, 1))
    whole = ExactSum()
    whole.add(rows)
    for cuts in ([100, 200], [1, 2, 150, 299], list(range(7, 300, 7))):
        parts = [ExactSum() for _ in range(len(cuts) + 1)]
        for part, chunk in zip(parts, np.split(rows[::-1], cuts)):
            part.add(chunk)
        merged = parts[-1]
        for part in parts[:-1]:
            merged.merge(part)
        np.testing.assert_array_equal(merged.total(), whole.total())


def _workers(graph, x, neurons, batch_size, count):
    return LocalWorkers([CalibrationShard(graph, x, neurons, batch_size, Shard(i, count)) for i in range(count)])


@pytest.mark.skipif(not kernel.available(), reason="level-wise simulation runs the compiled kernel")
@pytest.mark.parametrize(
    "method, kinds, encoding",
    [
        ("mmse", ("bias", "potential"), "direct"),
        ("percentile:99.9", ("potential",), "direct"),
        ("spike-norm", ("bias",), "direct"),
        ("spike-norm:seed", ("potential",), "poisson"),
    ],
)
def test_shards_give_one_process_results(digits_cnn, digits, method, kinds, encoding):
    graph = canonicalize(import_graph(digits_cnn))
    x = digits[0][:230]
    neurons = Neurons(timesteps=6, encoding=encoding)
    results = []
    for count in (1, 2, 3):
        workers = _workers(graph, x, neurons, 32, count)
        thresholds = calibrate(graph, x, method, True, neurons, 32, workers)
        fixes = correct_layers(graph, thresholds, x, neurons, kinds, 32, workers)
        results.append((thresholds, fixes))
    for thresholds, fixes in results[1:]:
        for name, theta in results[0][0].items():
            np.testing.assert_array_equal(thresholds[name], theta)
        for name, value in results[0][1].current.items():
            np.testing.assert_array_equal(fixes.current[name], value)
        for name, value in results[0][1].membrane_init.items():
            np.testing.assert_array_equal(fixes.membrane_init[name], value)


def test_conversion_uses_one_local_shard_by_default(digits_cnn, digits):
    """The default conversion's thresholds are what calibrate() gives with one shard."""
    snn = onnx2snn.convert(digits_cnn, digits[0][:100], "max", corrections=())
    graph = canonicalize(import_graph(digits_cnn))
    thresholds = calibrate(graph, digits[0][:100], "max", True, Neurons(), 128)
    for name, theta in snn.thresholds.items():
        np.testing.assert_array_equal(theta, thresholds[name])


@pytest.mark.parametrize("method", ["mmse", "percentile:99.9"])
def test_histograms_on_power_of_two_ranges_merge_exactly_across_shards(digits_cnn, digits, method, monkeypatch):
    """Where the activations do not fit the statistics pass's cache, histograms count on
    power-of-two ranges that grow batch by batch: the thresholds do not depend on the number of
    shards (nor on where the running maximum grew), and they stay near the exact histograms'."""
    from onnx2snn.calibration import statistics

    graph = canonicalize(import_graph(digits_cnn))
    x = digits[0][:230]
    neurons = Neurons(timesteps=6)
    exact = calibrate(graph, x, method, True, neurons, 32, _workers(graph, x, neurons, 32, 1))
    monkeypatch.setattr(statistics, "CACHE_BUDGET", 0)
    monkeypatch.setattr("onnx2snn.calibration.shards.CACHE_BUDGET", 0)
    results = [calibrate(graph, x, method, True, neurons, 32, _workers(graph, x, neurons, 32, n)) for n in (1, 2, 3)]
    for thresholds in results[1:]:
        for name, theta in results[0].items():
            np.testing.assert_array_equal(thresholds[name], theta)
    # bins at most twice as wide: mmse's candidates are 1% apart, a percentile moves within a bin
    for name, theta in exact.items():
        np.testing.assert_allclose(results[0][name], theta, rtol=0.011)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("group", [1, 100, None])
@pytest.mark.parametrize("samples", [None, 40, 1 << 40])
@pytest.mark.parametrize("taken", [True, False])
def test_running_counts_are_the_counts_on_the_final_power_of_two_range(
    per_channel, compiled, group, samples, taken, monkeypatch
):
    """Counts kept on a range that doubles as the maximum grows (values spanning decades, a row
    that stays empty, a row that starts empty) equal counting all the data at once on the power
    of two above its maximum, in any batch order, whether batches are counted at once or wait
    for the next ones (``group`` values a row), counted with their maxima in one read (``take``,
    the kernel's: the maxima of what it counted, batch or group, add up to the data's) or
    given them (``add``), and in 32 bits where the number of samples says that they fit."""
    from onnx2snn.calibration import statistics

    if group is not None:
        monkeypatch.setattr(statistics, "GROUP", group)
    if not compiled:
        monkeypatch.setattr(kernel, "available", lambda: False)
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(40, 6, 3, 3)) * 10.0 ** rng.integers(-3, 4, (40, 1, 1, 1))).astype(np.float32)
    a[:, 2] = -1.0  # never positive
    a[:25, 4] = 0.0  # positive only in late batches
    a[37, 1, 0, 0] = 4.0  # a maximum that is a power of two: counted below its range's top
    taken = taken and compiled
    for order in (np.arange(40), np.arange(40)[::-1], rng.permutation(40)):
        running = statistics.RunningCounts(per_channel, samples)
        peak, waiting = None, []
        for chunk in np.array_split(a[order], 7) + ([a[:0]] if taken else []):  # take: an empty batch too
            waiting.append(chunk)
            m = running.take(chunk) if taken else statistics.row_maxima(chunk, per_channel)
            if m is not None:  # the maxima of what was counted now: this batch and those that waited
                np.testing.assert_array_equal(m, statistics.row_maxima(np.concatenate(waiting), per_channel))
                peak, waiting = (m if peak is None else np.maximum(peak, m)), []
            if not taken:
                running.add(chunk, peak)
        m = running.flush()
        if taken and waiting and sum(len(w) for w in waiting):
            np.testing.assert_array_equal(m, statistics.row_maxima(np.concatenate(waiting), per_channel))
            peak = np.maximum(peak, m) if peak is not None else m
        else:
            assert m is None
        np.testing.assert_array_equal(peak, statistics.row_maxima(a, per_channel))
        tops = statistics.power_tops(statistics.row_maxima(a, per_channel))
        assert np.all(tops > statistics.row_maxima(a, per_channel))
        np.testing.assert_array_equal(running.on(tops), statistics.row_counts(a, per_channel, tops))
        assert running.counts.dtype == (np.uint32 if samples == 40 else np.int64)
        wider = tops * np.float32(8)  # a larger range, as another shard's maximum may ask for
        np.testing.assert_array_equal(running.on(wider), statistics.row_counts(a, per_channel, wider))


def test_running_counts_take_64_bits_where_the_samples_could_fill_32():
    """The width of the counts comes from the number of samples and a sample's size, also where
    the first batch is empty."""
    from onnx2snn.calibration import statistics

    a = np.ones((4, 3, 100, 100), np.float32)
    for samples, dtype in ((1000, np.uint32), (1 << 31, np.int64)):
        running = statistics.RunningCounts(True, samples)
        running.add(a[:0], statistics.row_maxima(a, True))
        running.add(a, statistics.row_maxima(a, True))
        counts = running.on(statistics.power_tops(statistics.row_maxima(a, True)))
        assert counts.dtype == dtype and counts.sum() == a.size


@pytest.mark.parametrize("budget", [None, 0])
def test_counts_from_the_one_pass_equal_a_second_pass(digits_cnn, digits, budget, monkeypatch):
    """What the statistics pass keeps (the activations, or counts on power-of-two ranges) gives
    the counts a second run of the ANN over the data gives (what a replaced worker does)."""
    from onnx2snn.calibration import statistics
    from onnx2snn.passes import activation_nodes

    if budget is not None:
        monkeypatch.setattr("onnx2snn.calibration.shards.CACHE_BUDGET", budget)
    graph = canonicalize(import_graph(digits_cnn))
    names = [n.outputs[0].name for n in activation_nodes(graph)]
    x = digits[0][:150]
    shard = CalibrationShard(graph, x, Neurons(), 32)
    maxima, whole = shard.statistics(names, True, True)
    assert whole == (budget is None)
    tops = maxima if whole else {name: statistics.power_tops(m) for name, m in maxima.items()}
    kept = shard.counts(names, True, tops)
    again = CalibrationShard(graph, x, Neurons(), 32).counts(names, True, tops)
    for name in names:
        np.testing.assert_array_equal(kept[name], again[name])
        assert kept[name].sum() > 0


def _relu_graph(shape, hidden=None):
    """x [N, *shape] -> (a 3x3 convolution to ``hidden`` channels ->) Relu, shapes as declared."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, name = [], [], "x"
    if hidden:
        weight = np.random.default_rng(0).normal(size=(hidden, shape[0], 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"))
        name = "c"
    nodes.append(helper.make_node("Relu", [name], ["y"], name="r"))
    i = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
    o = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [i], [o], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return canonicalize(import_graph(model))


@pytest.mark.parametrize("per_channel", [True, False])
def test_a_percentile_on_power_of_two_ranges_stays_at_or_below_the_maximum(per_channel, monkeypatch):
    """The last bin of a power-of-two range reaches past the maximum: percentile:100 is still
    the maximum, as with exact histograms."""
    graph = _relu_graph([2, 4, 4])
    x = np.random.default_rng(0).random((64, 2, 4, 4), dtype=np.float32)
    x[:, 0] *= 3.0
    x[5, 0, 0, 0] = 3.0
    x[:, 1] *= 5.0
    x[7, 1, 0, 0] = 5.0
    top = calibrate(graph, x, "max", per_channel, Neurons(), 16)["r"]
    for budget in (None, 0):
        if budget is not None:
            monkeypatch.setattr("onnx2snn.calibration.shards.CACHE_BUDGET", budget)
        np.testing.assert_array_equal(calibrate(graph, x, "percentile:100", per_channel, Neurons(), 16)["r"], top)
        assert np.all(calibrate(graph, x, "percentile:99.9", per_channel, Neurons(), 16)["r"] <= top)


def test_the_pass_keeps_activations_by_their_measured_size():
    """Declared shapes with unknown sizes (a graph calibrated without convert's shape
    resolution) do not make the pass keep more than CACHE_BUDGET: the first batch measures a
    sample's activations (here 1 MB, declared as 64 bytes)."""
    from onnx2snn.calibration import statistics
    from onnx2snn.passes import activation_nodes

    graph = _relu_graph([1, "H", "W"], hidden=16)
    names = [n.outputs[0].name for n in activation_nodes(graph)]
    x = np.random.default_rng(0).random((600, 1, 128, 128), dtype=np.float32)
    shard = CalibrationShard(graph, x, Neurons(), 16)
    _, whole = shard.statistics(names, True, True)
    assert not whole and isinstance(shard._held[2], dict)  # 600 MB of activations: counted, not kept
    assert 600 * 16 * 128 * 128 * 4 > statistics.CACHE_BUDGET
    small = CalibrationShard(graph, x[:100], Neurons(), 16)
    assert small.statistics(names, True, True)[1]  # 100 MB: kept


def test_the_kernel_refuses_a_histogram_without_bins():
    if not kernel.available():
        pytest.skip("the compiled kernel is not built")
    with pytest.raises(ValueError, match="at least one bin"):
        kernel.histogram(np.ones((2, 3), np.float32), True, np.ones(3, np.float32), 0)
