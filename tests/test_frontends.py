"""Models from real exporters: PyTorch (TorchScript and dynamo, external data), scikit-learn
through skl2onnx; several outputs; the shape arithmetic of ``x.view(x.size(0), -1)``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnx2snn
from tests.helpers import run_onnx


def agreement(snn, model, x, steps=512, output=None):
    name = model.graph.input[0].name
    ann = run_onnx(model, {name: x})
    index = [o.name for o in model.graph.output].index(output) if output else 0
    out = onnx2snn.SNNSession(snn).run(x, steps, output=output)
    return (out.argmax(1) == ann[index].argmax(1)).mean()


class ViewNet:
    @staticmethod
    def build():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 6, 3, padding=1)
                self.fc = nn.Linear(6 * 4 * 4, 10)

            def forward(self, x):
                x = nn.functional.avg_pool2d(torch.relu(self.conv(x)), 2)
                return self.fc(x.view(x.size(0), -1))  # functional relu and a Shape->Gather->Reshape chain

        torch.manual_seed(0)
        return Net().eval()


@pytest.mark.parametrize("dynamo", [False, True])
def test_pytorch_view_and_functional_relu(digits, dynamo):
    model = onnx2snn.from_torch(ViewNet.build(), digits[0][:1], dynamo=dynamo)
    snn = onnx2snn.convert(model, digits[0][:200])
    onnx.checker.check_model(snn.proto, full_check=True)
    assert len(snn.layers) == 1
    assert agreement(snn, model, digits[2][:100]) >= 0.99
    assert onnx2snn.SNNSession(snn).run(digits[2][:7], 4).shape == (7, 10)  # any batch size


def test_dynamo_export_with_external_data(tmp_path, digits):
    import torch

    net = ViewNet.build()
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net,
        (torch.tensor(digits[0][:1]),),
        str(path),
        dynamo=True,
        external_data=True,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )
    assert (tmp_path / "net.onnx.data").exists()
    snn = onnx2snn.convert(path, digits[0][:200])
    assert agreement(snn, onnx.load(str(path)), digits[2][:100]) >= 0.99


def test_external_data_outside_the_folder_is_refused(tmp_path, digits):
    from onnx.external_data_helper import set_external_data

    model = onnx2snn.from_torch(ViewNet.build(), digits[0][:1])
    weight = next(t for t in model.graph.initializer if t.name.endswith("weight"))
    size = len(weight.raw_data)
    set_external_data(weight, location="../stolen.bin", offset=0, length=size)
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "m.onnx").write_bytes(model.SerializeToString())  # a crafted file, as an attacker would
    (tmp_path / "stolen.bin").write_bytes(b"\0" * size)
    with pytest.raises(onnx2snn.ModelError, match="points outside the model's folder"):
        onnx2snn.load_onnx(inner / "m.onnx")


def test_sklearn_mlp_through_skl2onnx(digits):
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    x = digits[0].reshape(len(digits[0]), -1)
    clf = MLPClassifier((32,), max_iter=300, random_state=0).fit(x, digits[1])
    model = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    snn = onnx2snn.convert(model, x, outputs=["probabilities"])
    assert snn.metadata["output_activations"]["probabilities"]["op"] == "Softmax"
    test = digits[2].reshape(len(digits[2]), -1)
    out = onnx2snn.SNNSession(snn).run(test, 512)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)
    assert (out.argmax(1) == clf.predict(test)).mean() >= 0.99
    # images flatten themselves for a 2-D model input
    assert onnx2snn.SNNSession(snn).run(digits[2][:3], 8).shape == (3, 10)


def test_sklearn_classifier_keeps_its_label_output(digits, tmp_path):
    """skl2onnx's label output (ArgMax -> ai.onnx.ml ArrayFeatureExtractor -> Reshape) and its
    probabilities (Softmax) are applied after decoding: the artifact keeps every output."""
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    x = digits[0].reshape(len(digits[0]), -1)
    names = np.array([f"digit {d}" for d in range(10)])
    clf = MLPClassifier((32,), max_iter=300, random_state=0).fit(x, names[digits[1]])
    model = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    snn = onnx2snn.convert(model, x)
    assert snn.head["outputs"] == ["label", "probabilities"] and len(snn.outputs) == 1
    assert {r["op"] for r in snn.metadata["report"] if r["fate"] == "moved"} == {
        "Softmax",
        "ArgMax",
        "ArrayFeatureExtractor",
        "Reshape",
    }
    test = digits[2].reshape(len(digits[2]), -1)
    session = onnx2snn.SNNSession(snn)
    labels = session.run(test, 512, output="label")
    probabilities = session.run(test, 512, output="probabilities")
    assert labels.dtype.kind in "OU" and (labels == clf.predict(test)).mean() >= 0.99
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    scores = session.run(test, 512)  # the decoded scores the head reads: their arg-max is the label
    np.testing.assert_array_equal(names[scores.argmax(1)], labels)
    # the same from the unrolled form and its standalone file, and the ANN back with both outputs
    np.testing.assert_array_equal(
        onnx2snn.SNNSession(snn, form="unrolled").run(test[:20], 16, output="label"),
        session.run(test[:20], 16, output="label"),
    )
    unrolled = onnx2snn.unroll(snn, 16)
    np.testing.assert_array_equal(
        run_onnx_named(unrolled, {"X": test[:20]}, ["label"])[0], session.run(test[:20], 16, output="label")
    )
    # the command line writes every output, string labels as strings
    from onnx2snn.tools.main import main

    np.savez(tmp_path / "test.npz", x=test[:30])
    args = ["run", str(snn.save(tmp_path / "snn.onnx")), "--data", str(tmp_path / "test.npz"), "--scale", "1"]
    assert main([*args, "-o", str(tmp_path / "out.npz"), "--timesteps", "16", "-q"]) == 0
    with np.load(tmp_path / "out.npz", allow_pickle=False) as out:
        np.testing.assert_array_equal(out["label"], session.run(test[:30], 16, output="label").astype(str))
        assert out["probabilities"].shape == (30, 10)
    ann = onnx2snn.to_ann(snn)
    assert [o.name for o in ann.graph.output] == ["label", "probabilities"]
    for got, want in zip(run_onnx(ann, {"X": test}), run_onnx(model, {"X": test})):
        np.testing.assert_array_equal(got, want) if got.dtype.kind in "OU" else np.testing.assert_allclose(
            got, want, atol=1e-6
        )


def run_onnx_named(model, feeds, names):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, feeds)


def test_an_arg_max_between_layers_is_refused():
    from onnx import helper

    from tests.helpers import const, make_model, tensor

    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("ArgMax", ["a"], ["i"], name="argmax", axis=1, keepdims=1),
        helper.make_node("Cast", ["i"], ["f"], name="cast", to=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [
        const("w", np.ones((4, 3))),
        const("b", np.zeros(4)),
        const("w2", np.ones((2, 1))),
        const("b2", np.zeros(2)),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3])], [tensor("y", ["N", 2])], inits)
    with pytest.raises(onnx2snn.ConversionError, match="node 'argmax' \\(ArgMax\\): an arg-max between layers"):
        onnx2snn.convert(model, np.ones((4, 3), np.float32))


def test_several_outputs(digits):
    import torch
    from torch import nn

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
            self.a, self.b = nn.Linear(32, 10), nn.Linear(32, 3)

        def forward(self, x):
            h = self.body(x)
            return self.a(h), torch.relu(self.b(h))

    torch.manual_seed(1)
    net = TwoHeads().eval()
    import io

    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.tensor(digits[0][:1]),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["digits", "aux"],
        dynamic_axes={"input": {0: "N"}},
    )
    model = onnx.load_from_string(buffer.getvalue())
    snn = onnx2snn.convert(model, digits[0][:200], "max", per_channel=False, corrections=())
    assert snn.outputs == ["digits", "aux"]
    x = digits[2][:100]
    assert agreement(snn, model, x, output="digits") >= 0.99
    ann_aux = run_onnx(model, {"input": x})[1]
    np.testing.assert_allclose(onnx2snn.SNNSession(snn).run(x, 1024, output="aux"), ann_aux, atol=0.05 * ann_aux.max())
    with pytest.raises(onnx2snn.ConfigError, match="no output 'nope'"):
        onnx2snn.SNNSession(snn).run(x, 4, output="nope")


def test_jax_flax_through_jax2onnx(digits):
    """A channels-last Flax CNN: jax2onnx emits Transposes, a Shape->Gather->Concat->Reshape chain
    and opset 23. Run by CI's JAX step (a venv of its own: jax2onnx pulls plain onnxruntime),
    skipped where jax2onnx is absent."""
    jax2onnx = pytest.importorskip("jax2onnx")
    from flax import nnx

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
            self.fc = nnx.Linear(8 * 4 * 4, 10, rngs=rngs)

        def __call__(self, x):  # NHWC
            x = nnx.relu(self.conv(x))
            x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
            return self.fc(x.reshape(x.shape[0], -1))

    model = jax2onnx.to_onnx(CNN(nnx.Rngs(0)), [("B", 8, 8, 1)])
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load_from_string(model.SerializeToString())
    assert "Transpose" in [n.op_type for n in model.graph.node]
    x = np.ascontiguousarray(digits[0].transpose(0, 2, 3, 1))
    snn = onnx2snn.convert(model, x[:200])
    assert agreement(snn, model, np.ascontiguousarray(digits[2].transpose(0, 2, 3, 1))[:150]) >= 0.99


def test_keras_through_tf2onnx_optional(digits):
    """Keras 3 via tf2onnx: run by CI's Keras step (TensorFlow in a venv of its own), skipped
    where TensorFlow is absent."""
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(pool_size=2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    x = np.ascontiguousarray(digits[0].transpose(0, 2, 3, 1))
    # a few epochs: untrained weights leave near-ties between the logits (agreement then swung
    # between 0.97 and 1.0 with the random initialization; trained, 1.0 for seeds 0-7)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, digits[1], epochs=5, batch_size=64, verbose=0)
    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def forward(x):  # tf2onnx's from_keras does not read Keras 3 models; tracing the call works for both
        return model(x)

    onnx_model, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=17)
    snn = onnx2snn.convert(onnx_model, x[:200])
    assert agreement(snn, onnx_model, np.ascontiguousarray(digits[2].transpose(0, 2, 3, 1))[:150]) >= 0.99
