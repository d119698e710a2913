"""Fine-tuning on the small digits models: a short spiking fine-tune lowers the training loss and
keeps the artifact valid; quantize-and-finetune writes integer weights; runs repeat with the
seed; the global batch and the seed decide the data order, not the number of workers; bad
inputs get typed errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx2snn

torch = pytest.importorskip("torch")

from onnx2snn.train.loop import batches, global_batches, shard  # noqa: E402


def _loss(module, x, y, **kwargs) -> float:
    with torch.no_grad():
        logits = module(torch.from_numpy(x), **kwargs)
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)))


@pytest.fixture(scope="module")
def digits_snn(digits_cnn, digits):
    return onnx2snn.convert(digits_cnn, digits[0][:400], timesteps=4)


def test_spiking_finetune_lowers_the_loss_and_keeps_the_artifact_valid(digits_snn, digits, tmp_path):
    x, y = digits[0][:512], digits[1][:512]
    data = onnx2snn.Dataset(x, y, "digits[:512]")
    before = _loss(onnx2snn.to_torch(digits_snn), x, y, timesteps=2)
    result = onnx2snn.finetune(digits_snn, data, timesteps=2, epochs=2, lr=0.02, batch_size=32)
    after = _loss(onnx2snn.to_torch(result.model), x, y, timesteps=2)
    assert after < 0.9 * before, (before, after)
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    path = result.save(tmp_path / "tuned.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # plain onnxruntime, nothing registered
    tuned = onnx2snn.load(path)
    assert tuned.timesteps == 2
    record = tuned.metadata["training"][-1]
    assert record["kind"] == "spiking" and record["timesteps"] == 2 and record["samples"] == 512
    assert record["epochs"] == 2 and record["final_loss"] == result.log[-1]["loss"]
    # the artifact runs what was trained: its session gives the torch module's outputs
    session = onnx2snn.SNNSession(tuned, providers="cpu", form="step").run(digits[2][:50], 2)
    with torch.no_grad():
        np.testing.assert_allclose(
            onnx2snn.to_torch(tuned)(torch.from_numpy(digits[2][:50]), 2).numpy(), session, atol=1e-5
        )
    thresholds = tuned.thresholds
    assert any(not np.array_equal(thresholds[k], v) for k, v in digits_snn.thresholds.items())  # thresholds trained
    assert all(np.all(v > 0) for v in thresholds.values())


def test_quantize_and_finetune_writes_integer_weights(digits_cnn, digits, tmp_path):
    x, y = digits[0][:600], digits[1][:600]
    result = onnx2snn.finetune(
        digits_cnn, onnx2snn.Dataset(x, y, "digits"), weight_bits=4, channel_wise=True, epochs=1, batch_size=64
    )
    model = result.model
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert sum(v == onnx.TensorProto.INT4 for v in types.values()) == 4  # the weights of 2 convs and 2 dense layers
    assert "BatchNormalization" not in [n.op_type for n in model.graph.node]  # canonical: folded before quantizing
    record = json.loads(next(p.value for p in model.metadata_props if p.key == "onnx2snn.finetune"))[-1]
    assert record["weight_bits"] == 4 and record["channel_wise"] and record["kind"] == "ann"
    x_test, y_test = digits[2], digits[3]
    assert (onnx2snn.run_ann(model, x_test).argmax(1) == y_test).mean() > 0.85
    snn = onnx2snn.convert(model, x[:300])  # the quantized ANN converts, its weights stay INT4
    assert onnx.TensorProto.INT4 in {t.data_type for t in snn.proto.graph.initializer}
    # spiking fine-tuning of integer weights keeps them integer, with their bits
    tuned = onnx2snn.finetune(snn, onnx2snn.Dataset(x, y, "digits"), timesteps=4, epochs=1, samples=128)
    assert tuned.record["integer_weight_bits"] == [4]
    assert {t.data_type for t in tuned.model.proto.graph.initializer} >= {onnx.TensorProto.INT4}


def test_runs_repeat_with_the_seed(digits_cnn, digits):
    data = onnx2snn.Dataset(digits[0][:256], digits[1][:256], "digits")
    first, again, other = (
        onnx2snn.finetune(digits_cnn, data, epochs=1, seed=seed, batch_size=32).model for seed in (1, 1, 2)
    )
    assert first.graph.initializer == again.graph.initializer
    assert first.graph.initializer != other.graph.initializer


def test_the_global_batch_and_seed_decide_the_order_not_the_workers():
    x, y = np.arange(100)[:, None], np.arange(100)
    options = onnx2snn.TrainOptions(batch_size=16, seed=3)
    one = list(batches(x, y, options, epoch=1))
    two = [list(batches(x, y, options, epoch=1, rank=r, world=2)) for r in (0, 1)]
    assert len(two[0]) == len(two[1]) == len(one)
    for whole, a, b in zip(one, *two):
        np.testing.assert_array_equal(np.sort(np.concatenate([a[1], b[1]])), whole[1])
    assert sorted(np.concatenate(global_batches(100, 16, 3, 0)).tolist()) == list(range(100))
    assert not np.array_equal(global_batches(100, 16, 3, 0)[0], global_batches(100, 16, 3, 1)[0])
    assert [len(shard(np.arange(16), r, 3)) for r in range(3)] == [5, 6, 5]  # shares differ by one at most


def test_learning_rate_drops_at_half_and_three_quarters():
    options = onnx2snn.TrainOptions(epochs=8, lr=1.0)
    assert [options.lr_at(e) for e in range(8)] == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    spiking = [onnx2snn.SNN_DEFAULTS.lr_at(e) / onnx2snn.SNN_DEFAULTS.lr for e in range(2)]
    assert spiking == pytest.approx([1, 0.1])  # the SNN's second epoch trains at a tenth, not a hundredth


def test_bad_inputs_get_typed_errors(digits_cnn, digits_snn, digits):
    x, y = digits[0][:64], digits[1][:64]
    labelled = onnx2snn.Dataset(x, y, "digits")
    with pytest.raises(onnx2snn.DataError, match="unlabelled.npz: fine-tuning needs labels"):
        onnx2snn.finetune(digits_cnn, onnx2snn.Dataset(x, None, "unlabelled.npz"))
    with pytest.raises(onnx2snn.ConfigError, match="weight bits must be an integer from 2 to 8, got 1"):
        onnx2snn.finetune(digits_cnn, labelled, weight_bits=1)
    with pytest.raises(onnx2snn.ConfigError, match="epochs must be a positive integer, got 0"):
        onnx2snn.finetune(digits_cnn, labelled, epochs=0)
    with pytest.raises(onnx2snn.ConfigError, match="unknown training option momentm"):
        onnx2snn.finetune(digits_cnn, labelled, momentm=0.5)
    with pytest.raises(onnx2snn.ConfigError, match="timesteps applies to an SNN artifact"):
        onnx2snn.finetune(digits_cnn, labelled, timesteps=4)
    with pytest.raises(onnx2snn.ConfigError, match="timesteps must be a positive integer, got 0"):
        onnx2snn.finetune(digits_snn, labelled, timesteps=0)
    with pytest.raises(onnx2snn.DataError, match="digits"):
        onnx2snn.finetune(digits_cnn, onnx2snn.Dataset(x[:, :, :4], y, "digits"))  # the wrong input shape
    if not torch.cuda.is_available():
        with pytest.raises(onnx2snn.ConfigError, match="device cuda: torch sees no CUDA device"):
            onnx2snn.finetune(digits_cnn, labelled, device="cuda")


def test_neurons_other_than_step_if_are_refused_by_name(digits_cnn, digits_snn, digits):
    labelled = onnx2snn.Dataset(digits[0][:64], digits[1][:64], "digits")
    with pytest.raises(onnx2snn.ModelError, match="inlined; training needs the step artifact"):
        onnx2snn.finetune(onnx2snn.inline(digits_snn), labelled)
    multi = onnx2snn.convert(digits_cnn, digits[0][:200], timesteps=4, spike_mode="multi")
    with pytest.raises(onnx2snn.ModelError, match="its neurons are MultiSpikeIF; the torch view trains IF"):
        onnx2snn.to_torch(multi)


def test_initial_membranes_train_and_are_written_back_in_their_constant_nodes(digits_snn, digits):
    """The potential correction's initial membranes are Constant nodes of the artifact: the torch
    view starts the neurons there, trains them with the thresholds, and writes them back."""
    layer = digits_snn.layers[0]
    assert layer.get("membrane_init")
    module = onnx2snn.to_torch(digits_snn)
    x = torch.from_numpy(digits[0][:32])
    np.testing.assert_allclose(
        module(x, 4).detach().numpy(), onnx2snn.SNNSession(digits_snn).run(digits[0][:32], 4), atol=1e-5
    )
    with torch.no_grad():
        module.view.parameter(layer["membrane_init"]).add_(0.25)
    written = module.to_snn()
    before, after = digits_snn.initial_membrane(layer), written.initial_membrane(layer)
    np.testing.assert_array_equal(after, (before + np.float32(0.25)).astype(np.float32))
