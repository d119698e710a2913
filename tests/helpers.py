"""Small models and data shared by the tests."""

from __future__ import annotations

import io
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.data import FASHION_MNIST_DIR

requires_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir() and not os.environ.get("CI"),
    reason="apt-get install dataset-fashion-mnist (CI installs it, and fails without it)",
)


def make_model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def tensor(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def mlp(activation: str = "Relu", hidden: int = 16, seed: int = 0) -> onnx.ModelProto:
    """x[N,8] -> Gemm -> activation -> Gemm -> y[N,4]."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node(activation, ["h"], ["a"], name="act1"),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [
        const("w1", rng.normal(0, 0.5, (hidden, 8))),
        const("b1", rng.normal(0, 0.1, hidden)),
        const("w2", rng.normal(0, 0.5, (4, hidden))),
        const("b2", rng.normal(0, 0.1, 4)),
    ]
    return make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], inits)


def run_onnx(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def export_torch(module, example, *, fold: bool = False) -> onnx.ModelProto:
    """TorchScript export with a dynamic batch axis; ``fold=False`` keeps BatchNormalization."""
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module.eval(),
        (example,),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        do_constant_folding=fold,
    )
    return onnx.load_from_string(buffer.getvalue())


def same_calibration(a, b) -> None:
    """Two artifacts hold bit-identical thresholds, initial membranes and correction currents."""
    for name, theta in a.thresholds.items():
        np.testing.assert_array_equal(theta, b.thresholds[name])
    for layer in a.layers:
        np.testing.assert_array_equal(a.initial_membrane(layer), b.initial_membrane(layer))
        if layer.get("current_shift"):
            np.testing.assert_array_equal(a.initializer(layer["current_shift"]), b.initializer(layer["current_shift"]))
