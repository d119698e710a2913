"""Weight quantization: the straight-through quantizer is exactly DequantizeLinear's product, the
integers round-trip exactly through ONNX (INT4 and INT8), onnxruntime runs INT4 weights for every
layer type, and the file shrinks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx2snn
from tests.helpers import const, make_model, run_onnx, tensor

torch = pytest.importorskip("torch")

from onnx2snn.train.jobs import canonical_ann  # noqa: E402
from onnx2snn.train.quantize import QuantSpec, fake_quantize, integers, stored_bits  # noqa: E402
from onnx2snn.train.view import GraphModule, default_quantization  # noqa: E402

CNN = Path(__file__).parents[2] / "benchmarks" / "models" / "fashion_mnist_cnn_bn.onnx"


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("axis", [None, 0])
def test_quantizer_follows_the_original_rule_with_a_straight_through_gradient(bits, axis):
    w = torch.randn(6, 5, requires_grad=True)
    spec = QuantSpec(bits, axis)
    wq = fake_quantize(w, spec)
    top = w.detach().abs().amax(dim=1, keepdim=True) if axis == 0 else w.detach().abs().max()
    alpha = top / (2 ** (bits - 1) - 1)
    np.testing.assert_array_equal(wq.detach().numpy(), (torch.round(w.detach() / alpha) * alpha).numpy())
    q, _ = integers(w, spec)
    assert np.abs(q.numpy()).max() == 2 ** (bits - 1) - 1  # the largest weight of each scale hits the top level
    assert stored_bits(q.numpy(), 8) == bits
    (wq * torch.arange(30.0).reshape(6, 5)).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.arange(30.0).reshape(6, 5))  # straight through


@pytest.mark.parametrize("bits,channel_wise", [(4, True), (3, False), (8, True), (2, True)])
def test_quantized_weights_round_trip_exactly(digits_cnn, bits, channel_wise):
    canonical = canonical_ann(digits_cnn)
    module = GraphModule(canonical, quantize=default_quantization(canonical, bits, channel_wise))
    written = module.to_onnx(int4=bits <= 4)
    by_name = {t.name: t for t in written.graph.initializer}
    expected_type = TensorProto.INT4 if bits <= 4 else TensorProto.INT8
    for name, spec in module.quantize.items():
        q = by_name[f"{name}.quantized"]
        assert q.data_type == expected_type
        scale = numpy_helper.to_array(by_name[f"{name}.scale"])
        integers_ = numpy_helper.to_array(q).astype(np.float32)
        shaped = (
            scale.reshape([-1 if i == spec.axis else 1 for i in range(integers_.ndim)])
            if spec.axis is not None
            else scale
        )
        # what DequantizeLinear computes is bit for bit what the forward pass used
        np.testing.assert_array_equal(integers_ * shaped, module.constant(name).detach().numpy())
    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(written, {"input": x})[0], module(torch.from_numpy(x)).numpy(), atol=1e-5)
    # read back, the integer weights are the same quantized weights and keep their bits
    again = GraphModule(written)
    assert {n: s.bits for n, s in again.quantize.items()} == {n: bits for n in module.quantize}
    for name in module.quantize:
        np.testing.assert_array_equal(again.constant(name).detach().numpy(), module.constant(name).detach().numpy())
    assert again.to_onnx().graph.initializer == written.graph.initializer


@pytest.mark.parametrize("op", ["Conv", "Gemm", "MatMul", "ConvTranspose"])
def test_onnxruntime_runs_int4_weights_for_every_layer(op):
    rng = np.random.default_rng(1)
    shapes = {"Conv": (4, 3, 3, 3), "ConvTranspose": (3, 4, 2, 2), "Gemm": (5, 6), "MatMul": (6, 5)}
    q = rng.integers(-7, 8, shapes[op]).astype(np.int8)
    weight = helper.make_tensor("q", TensorProto.INT4, q.shape, q.reshape(-1).tolist())
    x_shape, y_shape = ([2, 3, 6, 6], [2, 4, 4, 4]) if op == "Conv" else ([2, 6], [2, 5])
    if op == "ConvTranspose":
        x_shape, y_shape = [2, 3, 4, 4], [2, 4, 8, 8]
    attrs = {"transB": 1} if op == "Gemm" else {"strides": [2, 2]} if op == "ConvTranspose" else {}
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "s"], ["w"]),
        helper.make_node(op, ["x", "w"], ["y"], **attrs),
    ]
    model = make_model(nodes, [tensor("x", x_shape)], [tensor("y", y_shape)], [weight, const("s", 0.1)], opset=21)
    float_model = make_model(
        [helper.make_node(op, ["x", "w"], ["y"], **attrs)],
        [tensor("x", x_shape)],
        [tensor("y", y_shape)],
        [const("w", q.astype(np.float32) * np.float32(0.1))],
        opset=21,
    )
    x = rng.random(x_shape).astype(np.float32)
    # onnx2snn's sessions run the weights as written (onnxruntime's own default would fuse an integer
    # MatMul weight into MatMulNBits and quantize the activations too)
    np.testing.assert_allclose(onnx2snn.run_ann(model, x), run_onnx(float_model, {"x": x})[0], atol=1e-5)


def test_integer_weights_shrink_the_file():
    model = onnx.load(str(CNN))
    canonical = canonical_ann(model)
    size = len(canonical.SerializeToString())
    for bits, limit in ((4, 0.25), (8, 0.3)):
        module = GraphModule(canonical, quantize=default_quantization(canonical, bits, True))
        written = module.to_onnx(int4=bits <= 4)
        assert len(written.SerializeToString()) <= limit * size, bits
    assert onnx2snn.graph.default_opset(written) == onnx2snn.graph.default_opset(canonical)  # INT8 needs no upgrade
