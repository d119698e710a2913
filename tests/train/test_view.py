"""The torch view equals onnxruntime: every reference model, every architecture test, and SNN
artifacts step by step; trained values go back into ONNX bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnx2snn
from tests.helpers import export_torch, run_onnx

torch = pytest.importorskip("torch")

from onnx2snn.train.spiking import fire, if_step  # noqa: E402
from onnx2snn.train.view import GraphModule  # noqa: E402

MODELS = sorted((Path(__file__).parents[2] / "benchmarks" / "models").glob("*.onnx"))


def _initializers(model: onnx.ModelProto) -> dict[str, bytes]:
    return {t.name: t.SerializeToString() for t in model.graph.initializer}


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_reference_model_equals_onnxruntime(path):
    model = onnx.load(str(path))
    x = np.random.default_rng(0).random((8, 1, 28, 28)).astype(np.float32)
    expected = run_onnx(model, {"input": x})[0]
    module = onnx2snn.to_torch(model)
    with torch.no_grad():
        out = module(torch.from_numpy(x)).numpy()
    assert np.abs(out - expected).max() < 2e-5 * max(1.0, np.abs(expected).max())


def test_architectures_equal_onnxruntime():
    from tests.test_architectures import nets

    x = np.random.default_rng(1).uniform(0, 1, (4, 3, 16, 16)).astype(np.float32)
    for name, net in nets().items():
        torch.manual_seed(0)
        model = export_torch(net.eval(), torch.from_numpy(x[:1]))
        expected = run_onnx(model, {"input": x})[0]
        for canonical in (True, False):  # the canonical graph (BatchNorm folded) and the graph as exported
            module = onnx2snn.to_torch(model, canonical=canonical)
            with torch.no_grad():
                out = module(torch.from_numpy(x)).numpy()
            assert np.abs(out - expected).max() < 1e-5 * max(1.0, np.abs(expected).max()), (name, canonical)


def test_trained_values_are_written_back_exactly(digits_cnn):
    module = onnx2snn.to_torch(digits_cnn)
    untouched = module.to_onnx()
    assert _initializers(untouched) == _initializers(module.proto)  # nothing trained, nothing changed
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    written = module.to_onnx()
    by_name = {t.name: onnx.numpy_helper.to_array(t) for t in written.graph.initializer}
    assert module.param_index  # weights and biases of every layer
    for name in module.param_index:
        np.testing.assert_array_equal(by_name[name], module.parameter(name).detach().numpy())
    x = np.random.default_rng(2).random((5, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(written, {"input": x})[0], module(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_unknown_operator_is_named():
    from tests.helpers import make_model, tensor

    model = make_model(
        [onnx.helper.make_node("Erf", ["x"], ["y"], name="the_erf")], [tensor("x", ["N", 3])], [tensor("y", ["N", 3])]
    )
    with pytest.raises(onnx2snn.ConversionError, match="the_erf.*Erf"):
        GraphModule(model)


def test_if_step_equals_the_numpy_reference():
    rng = np.random.default_rng(3)
    theta = np.float32(0.7)
    x = rng.normal(0, 0.5, (64, 5)).astype(np.float32)
    x[0, :] = theta  # exactly at the threshold: fires
    for reset in ("subtract", "zero"):
        v_np = np.full((5,), 0.35, np.float32)
        v_t = torch.full((5,), 0.35)
        for step in x:
            s_np, v_np = onnx2snn.if_step(step, v_np, theta, reset)
            s_t, v_t = if_step(torch.from_numpy(step), v_t, torch.tensor(theta), reset == "zero")
            np.testing.assert_array_equal(s_t.numpy(), s_np)
            np.testing.assert_array_equal(v_t.numpy(), v_np)


def test_surrogate_gradient_is_a_triangle_around_the_threshold():
    theta = torch.tensor(2.0, requires_grad=True)
    v = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0], requires_grad=True)
    fire(v, theta).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), [0.0, 0.25, 0.5, 0.25, 0.0])  # (1 - |v - theta|/theta) / theta
    np.testing.assert_allclose(theta.grad.numpy(), -1.0)  # d fired / d theta = -d fired / d v


def _per_step(snn, x, steps):
    return onnx2snn.SNNSession(snn, providers="cpu", form="step").run(x, steps, per_step=True)


@pytest.mark.parametrize(
    "options",
    [
        {"corrections": ("potential",)},
        {"corrections": ("bias",), "per_channel": False, "reset": "zero"},
        {"corrections": ("bias", "potential"), "method": "max", "v_init": 0.0},
    ],
)
def test_snn_module_equals_the_artifact_step_by_step(digits_cnn, digits, options):
    x_cal, _, x_test, _ = digits
    snn = onnx2snn.convert(digits_cnn, x_cal[:300], timesteps=8, **options)
    expected = _per_step(snn, x_test[:64], 12)
    module = onnx2snn.to_torch(snn)
    with torch.no_grad():
        out = module(torch.from_numpy(x_test[:64]), 12, per_step=True).numpy()
    assert np.abs(out - expected).max() < 1e-5
    assert _initializers(module.to_snn().proto) == _initializers(snn.proto)


def test_snn_module_with_spiking_max_pools_and_residuals():
    from tests.test_architectures import nets

    net = nets()["resnet18_style"].eval()  # MaxPool on spikes, residual adds
    x = np.random.default_rng(4).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32)
    model = export_torch(net, torch.from_numpy(x[:1]))
    snn = onnx2snn.convert(model, x[:32], timesteps=8)
    assert snn.pools
    expected = _per_step(snn, x[32:], 10)
    with torch.no_grad():
        out = onnx2snn.to_torch(snn)(torch.from_numpy(x[32:]), 10, per_step=True).numpy()
    assert np.abs(out - expected).max() < 1e-5 * max(1.0, np.abs(expected).max())
