"""Calibration sharded over Ray actors gives the artifact one process gives, bit for bit; an
actor that dies is replaced on its shard and brought back to where the others are."""

from __future__ import annotations

import os

import numpy as np
import pytest

import onnx2snn
from tests.helpers import same_calibration

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
from onnx2snn.runtime import kernel  # noqa: E402

pytestmark = pytest.mark.skipif(not kernel.available(), reason="distributed calibration runs the compiled kernel")


@pytest.fixture(scope="module")
def local_cluster():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize(
    "options",
    [
        {},  # the default: mmse per channel, potential correction
        {"method": "spike-norm", "corrections": ("bias",), "timesteps": 6},
        {"method": "spike-norm:seed", "corrections": ("potential",), "timesteps": 6, "encoding": "poisson"},
    ],
)
def test_sharded_calibration_equals_one_process(local_cluster, digits_cnn, tmp_path, options):
    model = tmp_path / "ann.onnx"
    model.write_bytes(digits_cnn.SerializeToString())
    one = onnx2snn.convert(str(model), "digits", calibration_samples=300, batch_size=64, **options)
    two = onnx2snn.convert(str(model), "digits", calibration_samples=300, batch_size=64, workers=2, **options)
    same_calibration(one, two)
    assert two.metadata["calibration"]["distributed"]["workers"] == 2


def test_a_dead_actor_is_replaced_on_its_shard(local_cluster, digits_cnn, digits):
    from onnx2snn.calibration import correct_layers
    from onnx2snn.calibration.shards import LocalWorkers
    from onnx2snn.distributed.calibrate import RayWorkers
    from onnx2snn.graph import import_graph
    from onnx2snn.neuron import Neurons
    from onnx2snn.passes import canonicalize

    graph = canonicalize(import_graph(digits_cnn))
    x = digits[0][:200]
    neurons = Neurons(timesteps=4)
    thresholds = onnx2snn.convert(digits_cnn, x, "max", corrections=(), timesteps=4).thresholds
    expected = correct_layers(graph, thresholds, x, neurons, ("potential",), 64, LocalWorkers.of(graph, x, neurons, 64))

    workers = RayWorkers(graph, x, None, None, neurons, 64, 2)
    killed = []
    call = workers.call

    def call_and_kill(method, *args):  # kill one actor after the first level has fired
        result = call(method, *args)
        if method == "fire" and not killed:
            ray.kill(workers.actors[1], no_restart=True)
            killed.append(1)
        return result

    workers.call = call_and_kill
    got = correct_layers(graph, thresholds, x, neurons, ("potential",), 64, workers)
    assert killed
    for name, value in expected.membrane_init.items():
        np.testing.assert_array_equal(got.membrane_init[name], value)


def test_convert_cli_with_ray(local_cluster, digits_cnn, tmp_path):
    from onnx2snn.tools.main import main

    model = tmp_path / "ann.onnx"
    model.write_bytes(digits_cnn.SerializeToString())
    args = ["convert", str(model), "--calibration", "digits", "--calibration-samples", "200", "--timesteps", "4"]
    assert main(args + ["-o", str(tmp_path / "one.onnx")]) == 0
    assert main(args + ["-o", str(tmp_path / "two.onnx"), "--ray", "--workers", "2"]) == 0
    same_calibration(onnx2snn.load(tmp_path / "one.onnx"), onnx2snn.load(tmp_path / "two.onnx"))
