"""Canonicalization keeps the ANN's function while folding BN, Dropout/Identity, MatMul+Add."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnx2snn.graph import export_model, import_graph
from onnx2snn.passes import canonicalize
from tests.helpers import const, make_model, run_onnx, tensor


def canonical(model):
    graph = import_graph(model)
    return export_model(canonicalize(graph))


def ops(model):
    return [n.op_type for n in model.graph.node]


def test_batchnorm_after_conv_is_folded(digits_cnn, digits):
    assert "BatchNormalization" in ops(digits_cnn)
    out = canonical(digits_cnn)
    assert "BatchNormalization" not in ops(out)
    assert "Dropout" not in ops(out) and "Identity" not in ops(out)
    x = digits[2][:50]
    np.testing.assert_allclose(run_onnx(out, {"input": x})[0], run_onnx(digits_cnn, {"input": x})[0], atol=1e-4)


def _bn_inits(prefix, c, rng):
    return [
        const(f"{prefix}_g", rng.uniform(0.5, 2, c)),
        const(f"{prefix}_b", rng.normal(0, 1, c)),
        const(f"{prefix}_m", rng.normal(0, 1, c)),
        const(f"{prefix}_v", rng.uniform(0.5, 2, c)),
    ]


def test_batchnorm_after_gemm_and_free_standing():
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "a_g", "a_b", "a_m", "a_v"], ["xn"], name="bn_in"),
        helper.make_node("Gemm", ["xn", "w", "b"], ["h"], name="fc", alpha=0.5, beta=2.0),
        helper.make_node("BatchNormalization", ["h", "c_g", "c_b", "c_m", "c_v"], ["hn"], name="bn_fc"),
        helper.make_node("Relu", ["hn"], ["y"], name="relu"),
    ]
    inits = (
        _bn_inits("a", 6, rng)
        + _bn_inits("c", 5, rng)
        + [const("w", rng.normal(size=(6, 5))), const("b", rng.normal(size=5))]
    )
    model = make_model(nodes, [tensor("x", ["N", 6])], [tensor("y", ["N", 5])], inits)
    out = canonical(model)
    assert ops(out).count("BatchNormalization") == 0
    assert "Mul" in ops(out) and "Add" in ops(out)  # the free-standing BN became an affine map
    x = rng.normal(size=(7, 6)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(out, {"x": x})[0], run_onnx(model, {"x": x})[0], atol=1e-4)


def test_matmul_add_becomes_gemm_and_identity_vanishes():
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"], name="id"),
        helper.make_node("MatMul", ["xi", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["h"], name="add"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    model = make_model(
        nodes,
        [tensor("x", ["N", 3])],
        [tensor("y", ["N", 4])],
        [const("w", rng.normal(size=(3, 4))), const("b", rng.normal(size=4))],
    )
    out = canonical(model)
    assert ops(out) == ["Gemm", "Relu"]
    x = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(out, {"x": x})[0], run_onnx(model, {"x": x})[0], atol=1e-5)


def test_unnamed_nodes_get_unique_names():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    out = canonical(make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])]))
    names = [n.name for n in out.graph.node]
    assert all(names) and len(set(names)) == 2
