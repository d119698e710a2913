"""The Python API raises its documented error types: ConfigError for a parameter out of range
(numpy scalars are numbers), DataError for inputs, ModelError for model files and artifacts
(also where onnxruntime or onnx-graphsurgeon is the one that fails), ConversionError for what
cannot convert, OutputError for what cannot be written. Never a KeyError, TypeError, a
library's own exception, or a silent NaN."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnx2snn
from onnx2snn.artifact import METADATA_KEY
from tests import badfiles as bad
from tests.helpers import mlp

X = np.random.default_rng(0).normal(size=(24, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def snn():
    return onnx2snn.convert(mlp(), X, "max", corrections=())


def test_numpy_scalars_are_numbers():
    snn = onnx2snn.convert(mlp(), X, "max", corrections=(), v_init=np.float32(0.25), timesteps=np.int64(8))
    assert snn.v_init == 0.25 and snn.timesteps == 8
    session = onnx2snn.SNNSession(snn, batch_size=np.int64(5), max_memory=np.float64(1e8))
    np.testing.assert_allclose(session.run(X, np.int32(4)), onnx2snn.SNNSession(snn).run(X, 4), rtol=1e-5, atol=1e-6)
    assert onnx2snn.unroll(snn, np.int64(3)).graph.output


@pytest.mark.parametrize(
    "options, option",
    [
        ({"timesteps": 2.5}, "timesteps"),
        ({"timesteps": True}, "timesteps"),
        ({"timesteps": 10**9}, "timesteps"),
        ({"v_init": "half"}, "v_init"),
        ({"v_init": float("nan")}, "v_init"),
        ({"calibration_samples": 2.5}, "calibration_samples"),
        ({"seed": "a"}, "seed"),
        ({"seed": -1}, "seed"),
        ({"method": None}, "method"),
        ({"method": "percentile:150"}, "method"),
        ({"corrections": ["bogus"]}, "corrections"),
        ({"reset": "never"}, "reset"),
        ({"encoding": "morse"}, "encoding"),
        ({"encoding": {"x": "morse"}}, "encoding"),
        ({"encoding": {3: "direct"}}, "encoding"),
        ({"batch_size": 0}, "batch_size"),
        ({"outputs": [3]}, "outputs"),
    ],
)
def test_bad_convert_options_are_config_errors_naming_the_option(options, option):
    with pytest.raises(onnx2snn.ConfigError) as error:
        onnx2snn.convert("no such model is read.onnx", X, **options)
    assert error.value.option == option


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda s: s.run(X * np.nan, 4), onnx2snn.DataError, "NaN"),
        (lambda s: s.run(np.full_like(X, np.inf), 4), onnx2snn.DataError, "infinite"),
        (lambda s: s.run(X[:0], 4), onnx2snn.DataError, "no samples"),
        (lambda s: s.run(X[0], 4), onnx2snn.DataError, "does not match"),
        (lambda s: s.run([[1, 2], [3]], 4), onnx2snn.DataError, "rectangular"),
        (lambda s: s.run(X.astype(np.complex64), 4), onnx2snn.DataError, "numeric"),
        (lambda s: s.run(X, True), onnx2snn.ConfigError, "integer"),
        (lambda s: s.run(X, 4.0), onnx2snn.ConfigError, "integer"),
        (lambda s: s.run(X, 70_000), onnx2snn.ConfigError, "at most"),
        (lambda s: s.run(X, 4, output="nope"), onnx2snn.ConfigError, "no output 'nope'"),
        (lambda s: onnx2snn.activity(s.model, X * np.nan, 2), onnx2snn.DataError, "NaN"),
        (lambda s: onnx2snn.unroll(s.model, 2.5), onnx2snn.ConfigError, "integer"),
        (lambda s: onnx2snn.evaluate(s.model, onnx2snn.Dataset(X, None, "x"), "8"), onnx2snn.ConfigError, "list"),
        (lambda s: onnx2snn.evaluate(s.model, onnx2snn.Dataset(X, None, "x"), [2.5]), onnx2snn.ConfigError, "integer"),
        (lambda s: onnx2snn.evaluate(s.model, "nothing.npz", [2]), onnx2snn.DataError, "nothing.npz"),
        (lambda s: onnx2snn.evaluate(s.model, {"x": X}, [2]), onnx2snn.ConfigError, "Dataset"),
        (lambda s: onnx2snn.SNNSession(s.model, form="fast"), onnx2snn.ConfigError, "form"),
        (lambda s: onnx2snn.SNNSession(s.model, threads=0), onnx2snn.ConfigError, "threads"),
        (lambda s: onnx2snn.SNNSession(s.model, max_memory=-1), onnx2snn.ConfigError, "max_memory"),
        (lambda s: onnx2snn.SNNSession(s.model, encoding="morse"), onnx2snn.ConfigError, "encoding"),
        (lambda s: onnx2snn.SNNSession(s.model, encoding={"x": "morse"}), onnx2snn.ConfigError, "encoding"),
        (lambda s: onnx2snn.SNNSession(s.model, encoding={"z": "poisson"}), onnx2snn.ConfigError, "no data input"),
        (lambda s: onnx2snn.SNNSession(s.model, providers="quantum"), onnx2snn.ConfigError, "provider"),
    ],
)
def test_bad_run_arguments_are_typed(snn, call, error, match):
    session = onnx2snn.SNNSession(snn)
    with pytest.raises(error, match=match):
        call(session)


def test_inputs_without_labels_are_evaluated_for_agreement(snn):
    report = onnx2snn.evaluate(snn, onnx2snn.Dataset(X, None, "x"), [4])
    assert report["ann"]["accuracy"] is None and 0 <= report["snn"]["4"]["agreement"] <= 1
    assert onnx2snn.model_inputs(snn, X)[1].shape == X.shape  # an array is a data set without labels


@pytest.mark.parametrize(
    "data, match",
    [(None, "data spec"), (3.5, "data spec"), ([[1.0, 2.0], [3.0]], "rectangular")],
)
def test_bad_data_is_a_data_error(data, match):
    load = onnx2snn.load_data if data is None or isinstance(data, float) else lambda d: onnx2snn.convert(mlp(), d)
    with pytest.raises((onnx2snn.DataError, onnx2snn.CalibrationError), match=match):
        load(data)


def test_preprocessing_is_checked_when_made():
    for kwargs, option in (({"layout": "zz"}, "layout"), ({"std": [1, 0]}, "std"), ({"scale": float("inf")}, "scale")):
        with pytest.raises(onnx2snn.ConfigError) as error:
            onnx2snn.Preprocessing(**kwargs)
        assert error.value.option == option
    with pytest.raises(onnx2snn.ConfigError, match="no field 'evil'"):
        onnx2snn.Preprocessing.from_dict({"evil": 1})


@pytest.mark.parametrize(
    "build, match",
    [
        (bad.cycle, "cycle through node 'add'"),
        (bad.duplicate_output, "'h' is produced twice"),
        (bad.huge_dims_no_data, "'w1' of shape \\[25000, 25000\\] holds 0 values"),
        (lambda: bad.opset(99), "opset 99"),
        (lambda: bad.with_op("MatMul"), "node 'odd' \\(MatMul\\): .*input size 1"),
    ],
)
def test_broken_models_are_model_errors_before_any_library_sees_them(build, match):
    with pytest.raises(onnx2snn.ModelError, match=match):
        onnx2snn.convert(build(), X)
    with pytest.raises(onnx2snn.ModelError, match=match):
        onnx2snn.analyze(build())


def test_a_float16_model_is_refused_by_name():
    with pytest.raises(onnx2snn.ConversionError, match="input 'x' is float16"):
        onnx2snn.convert(bad.fp16_mlp(), X)


def test_standard_ops_are_not_called_custom():
    rows = {row["node"]: row for row in onnx2snn.analyze(bad.with_op("Erf"))}
    assert rows["odd"]["fate"] == "refused" and "custom" not in rows["odd"]["detail"]
    rows = {row["node"]: row for row in onnx2snn.analyze(bad.quantized())}
    assert "quantizes an activation" in rows["quantize"]["detail"]
    rows = {row["node"]: row for row in onnx2snn.analyze(bad.with_op("Frobnicate", "com.example"))}
    assert "custom op from domain 'com.example'" in rows["odd"]["detail"]


def test_an_artifact_onnxruntime_cannot_run_is_a_model_error(snn):
    """Metadata that passes every name check but lies about the input's size: onnxruntime's
    InvalidArgument comes back as a ModelError naming the model."""
    proto = onnx.ModelProto()
    proto.CopyFrom(snn.proto)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            meta = json.loads(p.value)
            meta["inputs"][0]["shape"] = [None, 5]  # format 3: a list of data inputs
            p.value = json.dumps(meta)
    with pytest.raises(onnx2snn.ModelError, match="onnxruntime failed"):
        onnx2snn.SNNSession(onnx2snn.SNNModel(proto, source="lying.onnx")).run(X[:, :5], 2)


def test_writing_where_a_folder_is_is_an_output_error(snn, tmp_path):
    with pytest.raises(onnx2snn.OutputError, match="Is a directory"):
        snn.save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def _tampered(snn: onnx2snn.SNNModel, change) -> onnx.ModelProto:
    """A copy of ``snn``'s model whose metadata ``change(meta)`` altered."""
    proto = onnx.ModelProto()
    proto.CopyFrom(snn.proto)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            meta = json.loads(p.value)
            change(meta)
            p.value = json.dumps(meta)
    return proto


def test_format_3_metadata_is_checked_against_the_graph(snn):
    """The list of data inputs covers every graph input that is no state; a trailing head reads
    ``<output>.decoded`` of the graph's outputs."""
    z = np.random.default_rng(1).normal(size=(24, 16)).astype(np.float32)
    two = onnx2snn.convert(bad.two_inputs(), {"x": X, "z": z}, "max", corrections=())
    assert two.input_names == ["x", "z"]
    with pytest.raises(onnx2snn.ModelError, match="inputs does not list the graph input 'z'"):
        onnx2snn.SNNModel(_tampered(two, lambda meta: meta["inputs"].pop()))
    with pytest.raises(onnx2snn.ModelError, match="inputs\\[1\\].name repeats the input 'x'"):
        onnx2snn.SNNModel(_tampered(two, lambda meta: meta["inputs"][1].update(name="x")))
    head = {"inputs": ["nothing.decoded"], "outputs": ["label"], "ann_outputs": ["label"], "onnx": ""}
    with pytest.raises(onnx2snn.ModelError, match="head.inputs\\[0\\] must be '<output>.decoded'"):
        onnx2snn.SNNModel(_tampered(snn, lambda meta: meta.update(head=head)))


def test_a_bias_correction_folded_by_a_simplifier_runs_but_cannot_rebuild_the_ann():
    """onnxslim folds a bias correction's Add into the Conv before it: the metadata then names a
    node and a constant the graph no longer has. The artifact loads and runs the same; only
    rebuilding the ANN needs what was folded, and says so."""
    from onnx import numpy_helper

    snn = onnx2snn.convert(mlp(), X, "max", corrections=("bias",))
    layer = snn.layers[0]
    proto = onnx.ModelProto()
    proto.CopyFrom(snn.proto)
    graph = proto.graph
    add = next(n for n in graph.node if n.name == layer["current_correction"])
    gemm = next(n for n in graph.node if add.input[0] in n.output)
    inits = {t.name: t for t in graph.initializer}
    bias = numpy_helper.to_array(inits[gemm.input[2]]) + numpy_helper.to_array(inits[layer["current_shift"]])
    inits[gemm.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), gemm.input[2]))
    graph.initializer.remove(inits[layer["current_shift"]])
    neuron = next(n for n in graph.node if n.name == layer["node"])
    neuron.input[0] = add.input[0]
    graph.node.remove(add)
    folded = onnx2snn.SNNModel(proto)
    np.testing.assert_allclose(
        onnx2snn.SNNSession(folded).run(X, 8), onnx2snn.SNNSession(snn).run(X, 8), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(onnx2snn.ModelError, match="bias correction of 'act1' was folded"):
        onnx2snn.to_ann(folded)
