"""Integer weights through conversion: DequantizeLinear on integer initializers stays (INT8 and
INT4), BatchNorm folds into the scale, the QDQ weights that onnxruntime's tools and PyTorch's
exporter write are accepted, activation quantization is refused by node."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx2snn
from onnx2snn.passes import canonicalize
from tests.helpers import const, make_model, run_onnx, tensor


def integer_tensor(q: np.ndarray, data_type: int) -> onnx.TensorProto:
    return helper.make_tensor("", data_type, q.shape, q.reshape(-1).tolist())


def _integer_mlp(data_type: int, opset: int, batchnorm: bool = False) -> onnx.ModelProto:
    """x[N,8] -> DQ(q1)·Gemm -> [BatchNorm] -> Relu -> DQ(q2)·Gemm, per-channel and per-tensor scales."""
    rng = np.random.default_rng(0)
    q1 = rng.integers(-7, 8, (16, 8)).astype(np.int8)
    q2 = rng.integers(-7, 8, (4, 16)).astype(np.int8)
    inits = [
        integer_tensor(q1, data_type),
        integer_tensor(q2, data_type),
        const("s1", rng.uniform(0.01, 0.1, 16)),
        const("s2", np.float32(0.05)),
        const("b1", rng.normal(0, 0.1, 16)),
        const("b2", rng.normal(0, 0.1, 4)),
    ]
    inits[0].name, inits[1].name = "q1", "q2"
    nodes = [
        helper.make_node("DequantizeLinear", ["q1", "s1"], ["w1"], name="dq1", axis=0),
        helper.make_node("DequantizeLinear", ["q2", "s2"], ["w2"], name="dq2"),
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["hn" if batchnorm else "h"], ["a"], name="act1"),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    if batchnorm:
        nodes.insert(3, helper.make_node("BatchNormalization", ["h", "g", "be", "m", "v"], ["hn"], name="bn"))
        inits += [
            const("g", rng.uniform(0.5, 1.5, 16)),
            const("be", rng.normal(0, 0.1, 16)),
            const("m", rng.normal(0, 0.1, 16)),
            const("v", rng.uniform(0.5, 2.0, 16)),
        ]
    return make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], inits, opset=opset)


@pytest.mark.parametrize("data_type,opset", [(TensorProto.INT8, 17), (TensorProto.INT4, 21)])
def test_integer_weights_stay_integer_in_the_artifact(data_type, opset):
    model = _integer_mlp(data_type, opset)
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, x[:200], "max", per_channel=False, corrections=())
    stored = {t.name: t.data_type for t in snn.proto.graph.initializer}
    assert stored["q1"] == stored["q2"] == data_type
    assert [n.op_type for n in snn.proto.graph.node].count("DequantizeLinear") == 2
    onnx.checker.check_model(snn.proto, full_check=True)
    ann = run_onnx(model, {"x": x[200:]})[0]
    np.testing.assert_allclose(run_onnx(onnx2snn.to_ann(snn), {"x": x[200:]})[0], ann, atol=1e-6)
    step = onnx2snn.SNNSession(snn, form="step").run(x[200:], 256)
    unrolled = onnx2snn.SNNSession(snn, form="unrolled").run(x[200:], 256)
    np.testing.assert_allclose(unrolled, step, atol=1e-5)
    assert (step.argmax(1) == ann.argmax(1)).mean() >= 0.97


def test_batchnorm_folds_into_the_integer_weights_scale():
    model = _integer_mlp(TensorProto.INT8, 17, batchnorm=True)
    graph = canonicalize(onnx2snn.graph.import_graph(model))
    ops = [n.op for n in graph.nodes]
    assert "BatchNormalization" not in ops and "Mul" not in ops  # folded, not a free-standing affine map
    dq = next(n for n in graph.nodes if n.name == "dq1")
    assert dq.inputs[0].name == "q1" and dq.inputs[1].values.shape == (16,)  # same integers, new per-channel scale
    folded = onnx2snn.graph.export_model(graph, model.opset_import)
    x = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(folded, {"x": x})[0], run_onnx(model, {"x": x})[0], atol=1e-5)


def test_onnxruntime_weight_only_qdq_converts():
    """onnxruntime's n-bit weight quantizer in QDQ form: blocked INT4 DequantizeLinear + MatMul."""
    pytest.importorskip("onnxruntime.quantization")
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="mm2"),
    ]
    model = make_model(
        nodes,
        [tensor("x", ["N", 64])],
        [tensor("y", ["N", 10])],
        [const("w1", rng.normal(size=(64, 64)) / 8), const("w2", rng.normal(size=(64, 10)) / 8)],
        opset=21,
    )
    quantizer = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True, quant_format=QuantFormat.QDQ)
    quantizer.process()
    quantized = quantizer.model.model
    assert {t.data_type for t in quantized.graph.initializer} >= {TensorProto.INT4}
    x = rng.normal(size=(300, 64)).astype(np.float32)
    snn = onnx2snn.convert(quantized, x[:200], "max", per_channel=False, corrections=())
    assert TensorProto.INT4 in {t.data_type for t in snn.proto.graph.initializer}
    ann = run_onnx(quantized, {"x": x[200:]})[0]
    out = onnx2snn.SNNSession(snn).run(x[200:], 256)
    assert (out.argmax(1) == ann.argmax(1)).mean() >= 0.97
    # batches of 4: the prefix's dequantized weights (no batch axis) are bound whole, one step a call
    np.testing.assert_allclose(onnx2snn.SNNSession(snn, batch_size=4).run(x[200:], 256), out, atol=1e-5)


def test_pytorch_fake_quantized_weights_become_integers():
    torch = pytest.importorskip("torch")
    from torch import nn

    class QConv(nn.Conv2d):
        def forward(self, x):
            s = self.weight.detach().abs().amax(dim=(1, 2, 3)) / 127
            zero = torch.zeros(s.shape[0], dtype=torch.int32)
            w = torch.fake_quantize_per_channel_affine(self.weight, s, zero, 0, -128, 127)
            return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)

    torch.manual_seed(0)
    net = nn.Sequential(QConv(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.rand(1, 1, 8, 8),), buffer, dynamo=False, input_names=["input"], output_names=["y"])
    model = onnx.load_from_string(buffer.getvalue())
    assert "QuantizeLinear" in [n.op_type for n in model.graph.node]
    x = np.random.default_rng(4).random((1, 1, 8, 8)).astype(np.float32)
    snn = onnx2snn.convert(model, np.repeat(x, 4, 0), "max", per_channel=False, corrections=())
    ops = [n.op_type for n in snn.proto.graph.node]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" in ops
    assert TensorProto.INT8 in {t.data_type for t in snn.proto.graph.initializer}
    # the folded integers are exactly onnxruntime's QuantizeLinear: the rebuilt ANN equals the export
    np.testing.assert_allclose(run_onnx(onnx2snn.to_ann(snn), {"input": x})[0], run_onnx(model, {"input": x})[0])


def test_activation_quantization_is_refused_by_node():
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx"], ["xq"], name="x_quantize"),
        helper.make_node("DequantizeLinear", ["xq", "sx"], ["xd"], name="x_dequantize"),
        helper.make_node("Gemm", ["xd", "w"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["y"], name="act"),
    ]
    inits = [const("sx", np.float32(0.02)), const("w", rng.normal(size=(4, 8)))]
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], inits)
    with pytest.raises(onnx2snn.ConversionError, match="'x_quantize' \\(QuantizeLinear\\): quantizes an activation"):
        onnx2snn.convert(model, rng.normal(size=(20, 8)).astype(np.float32))


def test_integer_kernels_are_refused_by_node():
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dq_x"),
        helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["h"], name="mm_int"),
        helper.make_node("Cast", ["h"], ["hf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Relu", ["hf"], ["a"], name="act"),
        helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc"),
    ]
    w = numpy_helper.from_array(np.ones((8, 4), np.uint8), "w")
    w2 = numpy_helper.from_array(np.ones((4, 4), np.float32), "w2")
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], [w, w2])
    rows = onnx2snn.analyze(model)
    refused = {r["node"]: r["detail"] for r in rows if r["fate"] == "refused"}
    assert "quantizes activations" in refused["dq_x"] and "quantizes activations" in refused["mm_int"]
