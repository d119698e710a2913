"""Evaluation sharded over a local Ray cluster gives exactly what one process gives, whatever
the number of workers, with direct and Poisson input; a worker that dies is run again."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

import onnx2snn

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def digits_snn(digits_cnn, digits):
    return onnx2snn.convert(digits_cnn, digits[0][:200], timesteps=8)


def _same(a, b):
    for key in ("samples", "ann", "encoding", "form", "neurons"):
        assert a[key] == b[key], key
    for t in a["snn"]:
        assert a["snn"][t]["accuracy"] == b["snn"][t]["accuracy"]
        assert a["snn"][t]["agreement"] == b["snn"][t]["agreement"]


@pytest.mark.parametrize("workers", [2, 3])
def test_sharded_evaluation_equals_one_process(local_cluster, digits_snn, workers):
    one = onnx2snn.evaluate(digits_snn, "digits:test", [1, 4, 16], batch_size=64)
    sharded = onnx2snn.evaluate(digits_snn, "digits:test", [1, 4, 16], batch_size=64, workers=workers)
    _same(one, sharded)
    shards = sharded["distributed"]["shards"]
    assert sum(s["stop"] - s["start"] for s in shards) == one["samples"] == 397
    assert all(s["start"] % 64 == 0 for s in shards)


def test_sharded_poisson_evaluation_draws_the_same_spikes(local_cluster, digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0][:200], "max", encoding="poisson", timesteps=8)
    one = onnx2snn.evaluate(snn, "digits:test", [8, 32], batch_size=50, seed=5, limit=300)
    sharded = onnx2snn.evaluate(snn, "digits:test", [8, 32], batch_size=50, seed=5, limit=300, workers=2)
    _same(one, sharded)


@dataclass
class DiesOnce(onnx2snn.Dataset):
    """A data set whose first reader exits hard, as a crashed worker process would."""

    marker: str = ""

    def __len__(self):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__len__()


def test_a_worker_that_dies_is_run_again_on_its_shard(local_cluster, digits_snn, tmp_path):
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests
    digits = onnx2snn.load_data("digits:test")
    data = DiesOnce(digits.x, digits.y, digits.source, digits.preprocessing, marker=str(tmp_path / "died"))
    one = onnx2snn.evaluate(digits_snn, digits, [4], batch_size=64)
    sharded = onnx2snn.evaluate(digits_snn, data, [4], batch_size=64, workers=2)
    assert os.path.exists(tmp_path / "died")  # one worker did die
    _same(one, sharded)


def test_eval_cli_with_ray(tmp_path, digits_snn, capsys):
    import json

    from onnx2snn.tools.main import main

    path = digits_snn.save(tmp_path / "snn.onnx")
    args = ["eval", str(path), "--data", "digits", "--timesteps", "4,8", "-q", "--batch-size", "64"]
    assert main(args + ["--json", str(tmp_path / "one.json")]) == 0
    assert main(args + ["--ray", "--workers", "2", "--json", str(tmp_path / "two.json")]) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    _same(one, two)
    assert two["distributed"]["workers"] == 2
    assert main(args + ["--workers", "2"]) == 2  # --workers without --ray: a bad argument (ConfigError)
    assert "--workers needs --ray" in capsys.readouterr().err


def test_unused_arrays_are_not_needed_by_the_driver(digits_snn):
    """A Dataset (arrays) is accepted too, in one process; the spec is what shards."""
    data = onnx2snn.load_data("digits:test")
    report = onnx2snn.evaluate(digits_snn, data, [4], batch_size=64)
    assert report["samples"] == 397 and np.isfinite(report["snn"]["4"]["agreement"])
