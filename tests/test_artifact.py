"""The artifact's contract: its metadata names every tensor and node a reader needs, and an
artifact of the earlier format (which named the correction and pool nodes by convention only)
still runs and still turns back into its ANN."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

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
    assert snn.metadata["format"] == 3
    assert {layer["node"], layer["current_correction"], pool["node"], pool["accumulate"], pool["difference"]} <= names
    assert {layer["threshold"], layer["current_shift"]} <= inits
    assert {layer["membrane"], pool["accumulated"], pool["pooled"]} <= inputs
    assert {layer["membrane_next"], pool["accumulated_next"], pool["pooled_next"], layer["membrane_init"]} <= outputs
    # the initial membrane is a constant output of the graph: any runtime reads it
    x = np.zeros((2, 2, 4, 4), np.float32)
    feeds = {
        v.name: np.zeros([2 if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim], np.float32)
        for v in snn.proto.graph.input
    }
    feeds["x"] = x
    (start,) = run_onnx_outputs(snn.proto, feeds, [layer["membrane_init"]])
    np.testing.assert_array_equal(snn.initial_membrane(layer), start)
    assert np.any(start != 0.5 * snn.initializer(layer["threshold"]))  # the potential correction's


def run_onnx_outputs(model, feeds, names):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, feeds)


def test_one_batch_symbol_everywhere():
    from onnx2snn.artifact import batch_symbol

    model = pooled_net()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # as torch names it
    snn = onnx2snn.convert(model, np.random.default_rng(1).uniform(0, 1, (16, 2, 4, 4)).astype(np.float32), "max")
    graph = snn.proto.graph
    symbols = {
        d.dim_param
        for v in list(graph.input) + list(graph.output) + list(graph.value_info)
        for d in v.type.tensor_type.shape.dim
        if not d.HasField("dim_value")
    }
    assert symbols == {"batch"} and snn.batch == "batch" == batch_symbol(snn.proto)


def _as_format_2(snn: onnx2snn.SNNModel) -> onnx.ModelProto:
    """``snn`` as onnx2snn 0.1 wrote it: one ``input``, initial membranes as initializers no node
    reads (only where potential correction set them), "batch" on the input and "N" elsewhere."""
    proto = onnx.ModelProto()
    proto.CopyFrom(snn.proto)
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    graph = proto.graph
    starts = {layer["membrane_init"] for layer in meta["layers"]}
    for node in [n for n in graph.node if n.output[0] in starts]:
        graph.node.remove(node)
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t), node.output[0]))
    for out in [o for o in graph.output if o.name in starts]:
        graph.output.remove(out)
    for value in list(graph.input)[1:] + list(graph.output) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "N"
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    meta["format"] = 2
    first = meta.pop("inputs")[0]
    meta["input"] = {"name": first["name"], "shape": first["shape"]}
    del meta["batch"]
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(meta)
    return proto


def test_a_format_2_artifact_is_upgraded_on_load(snn):
    old = _as_format_2(snn)
    assert not [o for o in old.graph.output if o.name.endswith(".membrane_init")]
    upgraded = onnx2snn.load(old)
    assert upgraded.metadata["format"] == 3 and upgraded.batch == "batch"
    assert upgraded.inputs == [{"name": "x", "shape": [None, 2, 4, 4], "encoding": "direct"}]
    np.testing.assert_array_equal(upgraded.initial_membrane(upgraded.layers[0]), snn.initial_membrane(snn.layers[0]))
    assert {o.name for o in upgraded.proto.graph.output} == {o.name for o in snn.proto.graph.output}
    x = np.random.default_rng(2).uniform(0, 1, (8, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(onnx2snn.SNNSession(upgraded).run(x, 8), onnx2snn.SNNSession(snn).run(x, 8))
    assert len(old.graph.output) < len(upgraded.proto.graph.output)  # the file given is left as it was


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


def test_a_missing_tensor_the_metadata_names_is_a_model_error(snn):
    broken = copy_of(snn)
    start = snn.layers[0]["membrane_init"]
    node = next(n for n in broken.proto.graph.node if n.output[0] == start)
    broken.proto.graph.node.remove(node)
    with pytest.raises(onnx2snn.ModelError, match=f"names tensor '{start}', which the graph lacks"):
        onnx2snn.SNNSession(broken)


def test_a_missing_state_is_a_model_error_not_a_key_error(snn):
    broken = copy_of(snn)
    state = snn.pools[0]["pooled"]
    value = next(v for v in broken.proto.graph.input if v.name == state)
    broken.proto.graph.input.remove(value)  # as a simplifier that folds an input with a default would
    with pytest.raises(onnx2snn.ModelError, match=f"names state input '{state}', which the graph lacks"):
        onnx2snn.SNNSession(broken)
