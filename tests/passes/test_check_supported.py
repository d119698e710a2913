"""Unsupported nodes are refused by name, before anything is converted."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnx2snn
from onnx2snn import ConversionError
from tests.helpers import const, make_model, mlp, tensor

X = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Gelu", "HardSwish", "LeakyRelu"])
def test_activation_between_layers_is_refused_by_name(op):
    model = mlp(activation=op)
    if op == "Gelu":
        model.opset_import[0].version = 20
    with pytest.raises(ConversionError) as err:
        onnx2snn.convert(model, X)
    assert err.value.node == "act1" and err.value.op_type == op
    assert "'act1'" in str(err.value) and op in str(err.value)


def test_product_of_two_activations_is_refused():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r1"),
        helper.make_node("Relu", ["x"], ["b"], name="r2"),
        helper.make_node("Mul", ["a", "b"], ["y"], name="gate"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 8])])
    with pytest.raises(ConversionError, match="'gate' \\(Mul\\).*not linear"):
        onnx2snn.convert(model, X)


def test_softmax_in_the_middle_is_refused_but_trailing_is_kept_out_of_the_loop():
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
        helper.make_node("Softmax", ["h"], ["p"], name="mid_softmax", axis=-1),
        helper.make_node("Relu", ["p"], ["y"], name="relu"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], [const("w", np.ones((4, 8)))])
    with pytest.raises(ConversionError, match="mid_softmax"):
        onnx2snn.convert(model, X)


def test_model_without_relu_is_refused():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], [const("w", np.ones((4, 8)))])
    with pytest.raises(ConversionError, match="no Relu"):
        onnx2snn.convert(model, X)


def test_clip_with_nonzero_min_is_refused():
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")]
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 8])], [const("lo", -1.0), const("hi", 6.0)])
    with pytest.raises(ConversionError, match="'clip' \\(Clip\\).*min"):
        onnx2snn.convert(model, X)
