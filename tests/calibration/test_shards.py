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
