"""Bad and hostile inputs, each written by a small function: models, artifacts and data files
that the error tests (tests/tools/test_bad_inputs.py, tests/test_api_errors.py) feed to onnx2snn."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.artifact import METADATA_KEY
from tests.helpers import const, make_model, mlp, tensor


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# --- ANNs ---------------------------------------------------------------------------------
def fp16_mlp() -> onnx.ModelProto:
    model = mlp()
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for v in list(model.graph.input) + list(model.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    return model


def opset(version: int) -> onnx.ModelProto:
    model = mlp()
    model.opset_import[0].version = version
    return model


def short_external_data(folder: Path) -> Path:
    """An ANN whose weights live in ann.data, cut short by 100 bytes."""
    model = mlp()
    path = folder / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    data = (folder / "ext.data").read_bytes()
    (folder / "ext.data").write_bytes(data[:-100])
    return path


def escaping_external_data(folder: Path) -> Path:
    """An ANN whose weights claim to live outside its folder."""
    model = mlp()
    tensor = model.graph.initializer[0]
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    return save(model, folder / "escape.onnx")


def huge_dims_no_data() -> onnx.ModelProto:
    """w1 claims 25,000 x 25,000 floats (2.5 GB) and holds none."""
    model = mlp()
    w = model.graph.initializer[0]
    w.ClearField("float_data")
    w.ClearField("raw_data")
    del w.dims[:]
    w.dims.extend([25_000, 25_000])
    return model


def cycle() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Add", ["x", "a"], ["h"], name="add"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("Gemm", ["a", "w", "b"], ["y"], name="fc", transB=1),
    ]
    inits = [const("w", np.ones((4, 8))), const("b", np.zeros(4))]
    return make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])], inits)


def duplicate_output() -> onnx.ModelProto:
    model = mlp()
    model.graph.node.insert(1, helper.make_node("Relu", ["x"], ["h"], name="again"))
    return model


def with_op(op: str, domain: str = "", **attrs) -> onnx.ModelProto:
    """mlp with ``op`` (one input, one output) between the first Gemm and the ReLU."""
    model = mlp()
    node = helper.make_node(op, ["h"], ["h2"], name="odd", domain=domain, **attrs)
    model.graph.node.insert(1, node)
    model.graph.node[2].input[0] = "h2"
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


def quantized() -> onnx.ModelProto:
    model = mlp()
    q = helper.make_node("QuantizeLinear", ["h", "scale", "zero"], ["hq"], name="quantize")
    dq = helper.make_node("DequantizeLinear", ["hq", "scale", "zero"], ["h2"], name="dequantize")
    model.graph.node.insert(1, q)
    model.graph.node.insert(2, dq)
    model.graph.node[3].input[0] = "h2"
    model.graph.initializer.extend(
        [numpy_helper.from_array(np.float32(0.1), "scale"), numpy_helper.from_array(np.uint8(128), "zero")]
    )
    return model


def data_dependent_if() -> onnx.ModelProto:
    """ReLU(h) if sum(h) != 0 else h: a condition computed from the data."""
    model = mlp()
    out = helper.make_tensor_value_info("t", TensorProto.FLOAT, None)
    then_graph = helper.make_graph([helper.make_node("Relu", ["h"], ["t"])], "then", [], [out])
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["h"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("ReduceSum", ["h"], ["s"], name="sum", keepdims=0),
        helper.make_node("Cast", ["s"], ["c"], name="nonzero", to=TensorProto.BOOL),
        helper.make_node("If", ["c"], ["h2"], name="branch", then_branch=then_graph, else_branch=else_graph),
    ]
    for i, node in enumerate(nodes, 1):
        model.graph.node.insert(i, node)
    model.graph.node[4].input[0] = "h2"
    return model


def loop() -> onnx.ModelProto:
    """A Loop whose trip count comes from the data."""
    model = mlp()
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Relu", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
        ],
    )
    nodes = [
        helper.make_node("ReduceSum", ["h"], ["m"], name="total", keepdims=0),
        helper.make_node("Cast", ["m"], ["trips"], name="trips", to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "", "h"], ["h2"], name="repeat", body=body),
    ]
    for i, node in enumerate(nodes, 1):
        model.graph.node.insert(i, node)
    model.graph.node[4].input[0] = "h2"
    return model


def two_inputs() -> onnx.ModelProto:
    model = mlp()
    model.graph.node[2].input[0] = "a2"
    model.graph.node.insert(2, helper.make_node("Add", ["a", "z"], ["a2"], name="plus"))
    model.graph.input.append(tensor("z", ["N", 16]))
    return model


# --- artifacts ------------------------------------------------------------------------------
def _metadata(model: onnx.ModelProto) -> dict:
    return json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))


def _set_metadata(model: onnx.ModelProto, value: str) -> onnx.ModelProto:
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            p.value = value
    return model


def tampered(snn_path: Path, how: str) -> onnx.ModelProto:
    """The artifact at ``snn_path`` with one thing broken (``how``)."""
    model = onnx.load(str(snn_path))
    meta = _metadata(model)
    layer = meta["layers"][0]
    if how == "empty metadata":
        return _set_metadata(model, "{}")
    if how == "list metadata":
        return _set_metadata(model, "[1, 2]")
    if how == "not json":
        return _set_metadata(model, "{'layers': ")
    if how == "deep json":
        return _set_metadata(model, "[" * 100_000 + "]" * 100_000)
    if how == "missing node":
        layer["node"] = "ghost"
    elif how == "threshold deleted":
        kept = [t for t in model.graph.initializer if t.name != layer["threshold"]]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        return model
    elif how == "membrane renamed":
        for v in model.graph.input:
            if v.name == layer["membrane"]:
                v.name = "renamed"
        for node in model.graph.node:
            node.input[:] = ["renamed" if t == layer["membrane"] else t for t in node.input]
        return model
    elif how == "function deleted":
        del model.functions[:]
        return model
    elif how == "timesteps text":
        meta["timesteps"] = "many"
    elif how == "timesteps huge":
        meta["timesteps"] = 10**12
    elif how == "format text":
        meta["format"] = "2"
    elif how == "newer format":
        meta["format"] = 99
    elif how == "preprocessing field":
        meta["preprocessing"] = {"scale": 1.0, "evil": True}
    elif how == "activation op":
        meta["output_activations"] = {meta["outputs"][0]: {"op": "Exp", "axis": 1}}
    elif how == "layers not list":
        meta["layers"] = {"a": 1}
    elif how == "input missing":
        meta["inputs"][0]["name"] = "nothing"  # format 3: a list of data inputs
    elif how == "reset bogus":
        meta["reset"] = "sometimes"
    else:
        raise ValueError(how)
    return _set_metadata(model, json.dumps(meta))


# --- data ------------------------------------------------------------------------------------
def npy_claiming(path: Path, shape: tuple[int, ...], dtype=np.float32, data: bytes = b"\0" * 64) -> Path:
    """An .npy file whose header says ``shape`` and which holds ``data``."""
    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)
    return path


def npz_claiming(path: Path, member: str, shape: tuple[int, ...]) -> Path:
    """An .npz whose array ``member`` has a header that says ``shape`` (and holds 64 bytes)."""
    import zipfile

    npy = npy_claiming(path.with_suffix(".tmp.npy"), shape)
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(npy, f"{member}.npy")
    npy.unlink()
    return path


def idx_folder(folder: Path, images: bytes | None = None, labels: bytes | None = None, gz: bool = False) -> Path:
    """A folder with the test split's IDX files (valid 2 images of 4x4 unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = struct.pack(">HBBIII", 0, 8, 3, 2, 4, 4) + bytes(range(32))
    if labels is None:
        labels = struct.pack(">HBBI", 0, 8, 1, 2) + bytes([1, 2])
    suffix = ".gz" if gz else ""
    (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(images)
    (folder / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(labels)
    return folder


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


def cifar_folder(folder: Path, batch: object | bytes) -> Path:
    """A cifar-10-batches-py folder whose test_batch is ``batch`` (pickled unless bytes)."""
    folder = folder / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=2)
    (folder / "test_batch").write_bytes(data)
    return folder.parent


def evil_pickle() -> _Evil:
    return _Evil()
