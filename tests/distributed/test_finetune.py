"""Fine-tuning data-parallel over Ray Train (DDP on a local cluster) follows the same loss
curve as one process for the same global batch and seed, within float noise, with equal and
unequal shares of each batch; the written model is the one one process writes."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

import onnx2snn

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}


def _close(one, two, tolerance):
    assert [e["samples"] for e in one.log] == [e["samples"] for e in two.log]
    np.testing.assert_allclose([e["loss"] for e in two.log], [e["loss"] for e in one.log], rtol=tolerance)
    np.testing.assert_allclose([e["accuracy"] for e in two.log], [e["accuracy"] for e in one.log], atol=0.01)
    a, b = (
        _weights(one.model if isinstance(one.model, onnx.ModelProto) else one.model.proto),
        _weights(two.model if isinstance(two.model, onnx.ModelProto) else two.model.proto),
    )
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=tolerance * max(1.0, np.abs(a[name]).max()), err_msg=name)


def test_quantized_ann_over_two_workers_follows_one_process(local_cluster, digits_cnn):
    """Batches of 63: shares of 32 and 31 samples, and a last batch of 1: one worker's share is
    empty and it still joins the step (a worker that skipped it would leave the other waiting)."""
    options = {"weight_bits": 4, "channel_wise": True, "epochs": 2, "samples": 316, "batch_size": 63}
    one = onnx2snn.finetune(digits_cnn, "digits:train", **options)
    two = onnx2snn.finetune(digits_cnn, "digits:train", workers=2, **options)
    assert two.record["distributed"]["workers"] == 2 and "distributed" not in one.record
    assert (
        "distributed" in json.loads(dict((p.key, p.value) for p in two.model.metadata_props)["onnx2snn.finetune"])[-1]
    )
    assert all(e["workers"] == 2 for e in two.log)
    _close(one, two, 1e-4)


def test_spiking_finetune_over_two_workers_follows_one_process(local_cluster, digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0][:200], timesteps=4)
    options = {"epochs": 1, "samples": 192, "batch_size": 32}
    one = onnx2snn.finetune(snn, "digits:train", **options)
    two = onnx2snn.finetune(snn, "digits:train", workers=2, **options)
    _close(one, two, 1e-4)
    assert two.model.metadata["training"][-1]["distributed"]["workers"] == 2


def test_errors_reach_the_caller_typed(local_cluster, digits_cnn):
    """The driver checks every argument before a worker starts; an error the workers meet while
    training (every one of them together, once) comes back as the same typed error."""
    with pytest.raises(onnx2snn.ConfigError, match="weight bits must be an integer from 2 to 8, got 12"):
        onnx2snn.finetune(digits_cnn, "digits:train", weight_bits=12, workers=2)
    with pytest.raises(onnx2snn.ConfigError, match="the loss became .* lower the learning rate"):
        onnx2snn.finetune(digits_cnn, "digits:train", workers=2, lr=1e12, epochs=1, samples=256)
