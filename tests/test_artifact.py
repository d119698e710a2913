"""The artifact's contract: its metadata names every tensor and node a reader needs, and an
artifact of the earlier format (which named the correction and pool nodes by convention only)
still runs and still turns back into its ANN."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

import onnx2snn
from onnx2snn.artifact import METADATA_KEY
from tests.helpers import const, make_model, run_onnx, tensor


def pooled_net():
    """x[N,2,4,4] -> Conv -> Relu -> MaxPool 2x2 -> Flatten -> Gemm -> y[N,3]."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["a"], name="relu"),
        helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="head", transB=1),
    ]
    inits = [
        const("w", rng.normal(0, 0.5, (3, 2, 3, 3))),
        const("b", rng.normal(0.1, 0.1, 3)),
        const("w2", rng.normal(0, 0.5, (3, 12))),
        const("b2", np.zeros(3)),
    ]
    return make_model(nodes, [tensor("x", ["N", 2, 4, 4])], [tensor("y", ["N", 3])], inits)


def copy_of(snn: onnx2snn.SNNModel) -> onnx2snn.SNNModel:
    proto = type(snn.proto)()
    proto.CopyFrom(snn.proto)
    return onnx2snn.load(proto)


@pytest.fixture(scope="module")
def snn():
    x = np.random.default_rng(1).uniform(0, 1, (64, 2, 4, 4)).astype(np.float32)
    return onnx2snn.convert(pooled_net(), x, "max", corrections=("bias", "potential"), timesteps=8)


def test_metadata_names_every_state_node_and_initializer(snn):
    names = {n.name for n in snn.proto.graph.node}
    inits = {t.name for t in snn.proto.graph.initializer}
    inputs = {v.name for v in snn.proto.graph.input}
    outputs = {v.name for v in snn.proto.graph.output}
    (layer,) = snn.layers
    (pool,) = snn.pools
    assert snn.metadata["format"] == 2
    assert {layer["node"], layer["current_correction"], pool["node"], pool["accumulate"], pool["difference"]} <= names
    assert {layer["threshold"], layer["current_shift"], layer["membrane_init"]} <= inits
    assert {layer["membrane"], pool["accumulated"], pool["pooled"]} <= inputs
    assert {layer["membrane_next"], pool["accumulated_next"], pool["pooled_next"]} <= outputs
    np.testing.assert_array_equal(snn.initial_membrane(layer), snn.initializer(layer["membrane_init"]))


def test_a_format_1_artifact_runs_and_turns_back_into_its_ann(snn):
    old = copy_of(snn)
    meta = json.loads(next(p.value for p in old.proto.metadata_props if p.key == METADATA_KEY))
    meta["format"] = 1
    for layer in meta["layers"]:
        del layer["current_correction"]
    for pool in meta["pools"]:
        del pool["accumulate"], pool["difference"]
    for prop in old.proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(meta)
    old = onnx2snn.load(old.proto)
    assert old.layers[0]["current_correction"] == snn.layers[0]["current_correction"]
    x = np.random.default_rng(2).uniform(0, 1, (8, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(onnx2snn.SNNSession(old).run(x, 8), onnx2snn.SNNSession(snn).run(x, 8))
    np.testing.assert_allclose(
        run_onnx(onnx2snn.to_ann(old), {"x": x})[0], run_onnx(pooled_net(), {"x": x})[0], atol=1e-5
    )


def test_a_missing_initializer_the_metadata_names_is_a_model_error(snn):
    broken = copy_of(snn)
    kept = [t for t in broken.proto.graph.initializer if t.name != snn.layers[0]["membrane_init"]]
    del broken.proto.graph.initializer[:]
    broken.proto.graph.initializer.extend(kept)
    with pytest.raises(onnx2snn.ModelError, match="membrane_init"):
        onnx2snn.SNNSession(broken)
