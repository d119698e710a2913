"""Property-based fuzzing of every loader: whatever bytes or values come in, a loader returns
something well formed or raises onnx2snn's error for it (ModelError, DataError, ...), never
another exception, never a hang, never code run from the file. Inputs are random, and valid
files with random damage (flipped, cut, inserted bytes; fields replaced by random values)."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import onnx2snn
from onnx2snn.artifact import METADATA_KEY
from tests.helpers import mlp

# ONNX2SNN_FUZZ=N runs N fresh random examples per property (a deeper search than the suite's)
DEEP = int(os.environ.get("ONNX2SNN_FUZZ", "0"))
FUZZ = settings(
    max_examples=DEEP or 60,
    deadline=None,
    derandomize=not DEEP,  # by default the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def damaged(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with a few random edits: bytes flipped, a cut, bytes inserted."""

    @st.composite
    def edit(draw) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            if kind == "flip" and data:
                data[at] ^= draw(st.integers(1, 255))
            elif kind == "cut":
                data = data[: draw(st.integers(0, len(data)))]
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            elif data:  # a field's worth of extreme bytes
                data[at : at + 4] = draw(st.sampled_from([b"\xff" * 4, b"\x00" * 4, b"\x7f\xff\xff\xff"]))
        return bytes(data)

    return edit()


def expect_typed(call, *types: type[Exception]):
    """Run ``call``; an exception must be one of onnx2snn's ``types``."""
    try:
        return call()
    except types:
        return None


# --- ONNX model files ------------------------------------------------------------------------
VALID_MODEL = mlp().SerializeToString()
X = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)


@FUZZ
@given(data=st.one_of(st.binary(max_size=512), damaged(VALID_MODEL)))
def test_model_files(tmp_path, data):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    model = expect_typed(lambda: onnx2snn.load_onnx(path), onnx2snn.ModelError)
    if model is not None:
        expect_typed(lambda: onnx2snn.analyze(model), onnx2snn.Onnx2SnnError)


OPS = ["Relu", "Gemm", "Add", "Sigmoid", "Conv", "Identity", "MatMul", "Clip", "Reshape", "Loop", "Frobnicate"]


@st.composite
def mutated_models(draw) -> onnx.ModelProto:
    """mlp() with random structural damage: ops, tensor names, dims, types, opsets."""
    model = mlp()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["op", "input", "output", "dims", "dtype", "opset", "drop"]))
        node = model.graph.node[draw(st.integers(0, len(model.graph.node) - 1))]
        tensor = model.graph.initializer[draw(st.integers(0, len(model.graph.initializer) - 1))]
        names = ["x", "h", "a", "y", "w1", "b1", "ghost", ""]
        if kind == "op":
            node.op_type = draw(st.sampled_from(OPS))
        elif kind == "input" and node.input:
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif kind == "output":
            node.output[0] = draw(st.sampled_from(names))
        elif kind == "dims":
            del tensor.dims[:]
            tensor.dims.extend(draw(st.lists(st.integers(-2, 40), max_size=3)))
        elif kind == "dtype":
            tensor.data_type = draw(st.integers(0, 30))
        elif kind == "opset":
            model.opset_import[0].version = draw(st.integers(-1, 40))
        elif kind == "drop":
            model.graph.node.remove(node)
    return model


@FUZZ
@given(model=mutated_models())
def test_damaged_models_convert_or_say_why(model):
    loaded = expect_typed(lambda: onnx2snn.load_onnx(model), onnx2snn.ModelError)
    if loaded is not None:
        expect_typed(lambda: onnx2snn.convert(loaded, X, "max", corrections=()), onnx2snn.Onnx2SnnError)


# --- numpy files --------------------------------------------------------------------------------
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


VALID_NPY = _npy(X)
VALID_NPZ = _npz(x=X, y=np.arange(16))


def check_dataset(data: onnx2snn.Dataset) -> None:
    assert data.x.dtype == np.float32 and data.x.ndim >= 2 and len(data.x) > 0
    assert np.all(np.isfinite(data.x))
    assert data.y is None or (data.y.dtype == np.int64 and data.y.shape == (len(data.x),))


@st.composite
def npy_headers(draw) -> bytes:
    """An .npy header with a random shape and dtype, and a random amount of data after it."""
    shape = tuple(draw(st.lists(st.integers(0, 2**40), max_size=4)))
    dtype = draw(st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1", "<c8", "|O", "<U3", "|V4"]))
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": draw(st.booleans()), "shape": shape})
    return buffer.getvalue() + draw(st.binary(max_size=256))


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), damaged(VALID_NPY), npy_headers()))
def test_npy_files(tmp_path, data):
    path = tmp_path / "d.npy"
    path.write_bytes(data)
    loaded = expect_typed(lambda: onnx2snn.load_data(path), onnx2snn.DataError)
    if loaded is not None:
        check_dataset(loaded)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=256),
        damaged(VALID_NPZ),
        npy_headers().map(lambda header: _zip({"x.npy": header})),
    )
)
def test_npz_files(tmp_path, data):
    path = tmp_path / "d.npz"
    path.write_bytes(data)
    loaded = expect_typed(lambda: onnx2snn.load_data(path), onnx2snn.DataError)
    if loaded is not None:
        check_dataset(loaded)


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- IDX files ----------------------------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


VALID_IMAGES = _idx(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))
VALID_LABELS = _idx(np.array([3, 7], np.uint8))


@st.composite
def idx_headers(draw) -> bytes:
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=ndim, max_size=ndim))
    head = struct.pack(">HBB", draw(st.sampled_from([0, 1])), draw(st.sampled_from([8, 9, 13])), ndim)
    return head + struct.pack(f">{ndim}I", *dims) + draw(st.binary(max_size=64))


@FUZZ
@given(
    images=st.one_of(damaged(VALID_IMAGES), idx_headers(), st.binary(max_size=64)),
    labels=st.one_of(st.just(VALID_LABELS), damaged(VALID_LABELS), idx_headers()),
    compress=st.booleans(),
    damage_gzip=st.booleans(),
)
def test_idx_files(tmp_path, images, labels, compress, damage_gzip):
    folder = tmp_path / "idx"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    suffix = ".gz" if compress else ""
    if compress:
        images, labels = gzip.compress(images), gzip.compress(labels)
        if damage_gzip:
            images = images[:10] + bytes(reversed(images[10:]))
    (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(images)
    (folder / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(labels)
    loaded = expect_typed(lambda: onnx2snn.load_data(folder), onnx2snn.DataError)
    if loaded is not None:
        check_dataset(loaded)
        assert loaded.x.shape[1] == 1


# --- CIFAR-10 batches -----------------------------------------------------------------------------
VALID_BATCH = pickle.dumps(
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"batch_label": b"testing batch 1 of 1"}, protocol=2
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
batch_values = st.dictionaries(
    st.sampled_from([b"data", b"labels", "data", "labels", b"other"]),
    st.one_of(
        json_values,
        st.binary(max_size=64),
        st.builds(lambda n: np.zeros((n, 3072), np.uint8), st.integers(0, 3)),
        st.builds(lambda n: np.zeros(n, np.float64), st.integers(0, 3)),
    ),
    max_size=3,
)


@FUZZ
@given(
    batch=st.one_of(
        damaged(VALID_BATCH),
        st.binary(max_size=128),
        st.one_of(batch_values, json_values).map(lambda v: pickle.dumps(v, protocol=2)),
    )
)
def test_cifar_batches(tmp_path, batch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    (folder / "test_batch").write_bytes(batch)
    loaded = expect_typed(lambda: onnx2snn.load_data(f"cifar10:{tmp_path}"), onnx2snn.DataError)
    if loaded is not None:
        check_dataset(loaded)
        assert loaded.x.shape[1:] == (3, 32, 32)


# --- SNN artifact metadata -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact() -> onnx2snn.SNNModel:
    return onnx2snn.convert(mlp(), X, "max", corrections=("bias", "potential"), timesteps=4)


def _with_metadata(snn: onnx2snn.SNNModel, text: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    proto.CopyFrom(snn.proto)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            p.value = text
    return proto


@st.composite
def damaged_metadata(draw, valid: dict) -> str:
    """The artifact's metadata with fields replaced by random JSON, or deleted."""
    meta = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        target = meta
        path = []
        while isinstance(target, (dict, list)) and target and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(target) if isinstance(target, dict) else list(range(len(target)))))
            path.append(key)
            if not isinstance(target[key], (dict, list)):
                break
            target = target[key]
        if not isinstance(target, (dict, list)) or not target:
            continue
        key = draw(st.sampled_from(sorted(target) if isinstance(target, dict) else list(range(len(target)))))
        if draw(st.booleans()):
            target[key] = draw(json_values)
        elif isinstance(target, dict):
            del target[key]
    return json.dumps(meta)


def _use(snn: onnx2snn.SNNModel) -> None:
    """What the command line does with an artifact."""
    snn.thresholds, snn.states(), snn.timesteps, snn.outputs  # noqa: B018
    onnx2snn.SNNSession(snn).run(X[:3], 2)
    onnx2snn.to_ann(snn)
    onnx2snn.unroll(snn, 2)


@settings(FUZZ, max_examples=DEEP or 40)
@given(data=st.data())
def test_artifact_metadata(artifact, data):
    valid = json.loads(next(p.value for p in artifact.proto.metadata_props if p.key == METADATA_KEY))
    text = data.draw(st.one_of(damaged_metadata(valid), json_values.map(json.dumps), st.text(max_size=32)))
    assume(text != json.dumps(valid))
    snn = expect_typed(lambda: onnx2snn.load(_with_metadata(artifact, text)), onnx2snn.ModelError)
    if snn is not None:
        expect_typed(lambda: _use(snn), onnx2snn.Onnx2SnnError)
