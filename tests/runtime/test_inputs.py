"""Models with several data inputs: each its own encoding, calibration and evaluation data by
input name (a dict, or an npz with ``x_<name>`` or ``<name>`` arrays), ``SNNSession.run`` taking
a dict; the single-input API unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx2snn
from tests.helpers import const, make_model, run_onnx, tensor


def two_stream_net():
    """image[N,1,6,6] -> Conv -> Relu -> GAP -> Flatten; side[N,3] -> Gemm -> Relu; Concat -> Gemm -> y[N,4]."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    nodes = [
        n("Conv", ["image", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a1"], name="relu_image"),
        n("GlobalAveragePool", ["a1"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["side", "w2", "b2"], ["s"], name="side_fc", transB=1),
        n("Relu", ["s"], ["a2"], name="relu_side"),
        n("Concat", ["f", "a2"], ["joint"], name="concat", axis=1),
        n("Gemm", ["joint", "w3", "b3"], ["y"], name="head", transB=1),
    ]
    inits = [
        const("w1", rng.normal(0, 0.5, (4, 1, 3, 3))),
        const("b1", rng.normal(0.1, 0.1, 4)),
        const("w2", rng.normal(0, 0.5, (5, 3))),
        const("b2", rng.normal(0.1, 0.1, 5)),
        const("w3", rng.normal(0, 0.5, (4, 9))),
        const("b3", np.zeros(4)),
    ]
    inputs = [tensor("image", ["batch", 1, 6, 6]), tensor("side", ["batch", 3])]
    return make_model(nodes, inputs, [tensor("y", ["batch", 4])], inits)


def data(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(0, 1, (n, 1, 6, 6)).astype(np.float32),
        "side": rng.uniform(0, 1, (n, 3)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def snn():
    return onnx2snn.convert(two_stream_net(), data(200, 0), "max", corrections=())


def test_two_inputs_convert_and_converge_to_the_ann(snn):
    assert snn.input_names == ["image", "side"] and snn.batch == "batch"
    x = data(100, 1)
    ann = run_onnx(two_stream_net(), x)[0]
    out = onnx2snn.SNNSession(snn).run(x, 512)
    assert (out.argmax(1) == ann.argmax(1)).mean() >= 0.97
    assert np.abs(out - ann).max() < 0.05 * np.abs(ann).max()
    # x_<name> keys too, and the unrolled form the same numbers
    prefixed = {f"x_{k}": v for k, v in x.items()}
    np.testing.assert_array_equal(onnx2snn.SNNSession(snn).run(prefixed, 16), onnx2snn.SNNSession(snn).run(x, 16))
    np.testing.assert_allclose(
        onnx2snn.SNNSession(snn, form="unrolled").run(x, 16),
        onnx2snn.SNNSession(snn, form="step").run(x, 16),
        atol=1e-5,
    )


def test_each_input_its_own_encoding(snn):
    x = data(50, 2)
    mixed = onnx2snn.convert(two_stream_net(), data(200, 0), "max", corrections=(), encoding={"side": "poisson"})
    assert [i["encoding"] for i in mixed.inputs] == ["direct", "poisson"]
    session = onnx2snn.SNNSession(mixed, seed=3)
    assert session.encoding == "mixed" and session.form == "step"  # Poisson input: no unrolled form
    # Poisson spikes on the side features only: near the ANN at long T, not equal at T = 8
    ann = run_onnx(two_stream_net(), x)[0]
    long = session.run(x, 2048)
    assert np.abs(long - ann).max() < 0.1 * np.abs(ann).max()
    np.testing.assert_array_equal(onnx2snn.SNNSession(mixed, seed=3).run(x, 8), session.run(x, 8))  # seeded
    with pytest.raises(onnx2snn.ConfigError, match="encoding names no data input 'nope'"):
        onnx2snn.convert(two_stream_net(), data(20, 0), encoding={"nope": "poisson"})
    with pytest.raises(onnx2snn.ConfigError, match="no data input named 'other'"):
        onnx2snn.SNNSession(snn, encoding={"other": "poisson"})


def test_inputs_that_do_not_fit_are_data_errors(snn):
    x = data(5, 3)
    with pytest.raises(onnx2snn.DataError, match="the model has 2 data inputs \\(image, side\\)"):
        onnx2snn.SNNSession(snn).run(x["image"], 4)
    with pytest.raises(onnx2snn.DataError, match="no array for model input 'side'"):
        onnx2snn.SNNSession(snn).run({"image": x["image"]}, 4)
    with pytest.raises(onnx2snn.DataError, match="different numbers of samples"):
        onnx2snn.SNNSession(snn).run({"image": x["image"], "side": x["side"][:3]}, 4)
    with pytest.raises(onnx2snn.DataError, match="'side' of shape \\[N, 3\\]"):
        onnx2snn.SNNSession(snn).run({"image": x["image"], "side": x["image"]}, 4)


def test_npz_by_input_name_through_the_command_line(snn, tmp_path):
    from onnx2snn.tools.main import main

    x = data(40, 4)
    ann = run_onnx(two_stream_net(), x)[0]
    np.savez(tmp_path / "cal.npz", x_image=data(200, 0)["image"], x_side=data(200, 0)["side"])
    np.savez(tmp_path / "test.npz", image=x["image"], side=x["side"], y=ann.argmax(1))
    np.save(tmp_path / "ann.npy", np.zeros(1))
    onnx_path = tmp_path / "ann.onnx"
    onnx_path.write_bytes(two_stream_net().SerializeToString())
    snn_path = tmp_path / "snn.onnx"
    args = [
        "--debug",
        "convert",
        str(onnx_path),
        "-o",
        str(snn_path),
        "--calibration",
        str(tmp_path / "cal.npz"),
        "--scale",
        "1",
    ]
    assert main(args) == 0
    out = tmp_path / "out.npz"
    assert (
        main(["run", str(snn_path), "--data", str(tmp_path / "test.npz"), "-o", str(out), "--timesteps", "256", "-q"])
        == 0
    )
    with np.load(out) as result:
        assert (result["predictions"] == ann.argmax(1)).mean() >= 0.95
    report = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                str(snn_path),
                "--data",
                str(tmp_path / "test.npz"),
                "--timesteps",
                "64,256",
                "--json",
                str(report),
                "-q",
            ]
        )
        == 0
    )
    import json

    assert json.loads(report.read_text())["ann"]["accuracy"] == 1.0  # its labels are the ANN's own predictions


def test_a_sequence_input_feeds_one_slice_a_step_in_either_neuron_form():
    """A data input marked ``sequence`` takes [N, T, ...] and step t reads x[:, t]: the IF
    artifact's output equals the numpy reference fed slice by slice, with the ONNX neurons and
    with the compiled ones (the per-step inputs of both paths come from inputs.Encoder)."""
    import json

    from onnx2snn.neuron import if_step
    from onnx2snn.runtime import kernel
    from tests.helpers import mlp

    ann = mlp(hidden=12)
    rng = np.random.default_rng(0)
    snn = onnx2snn.convert(ann, rng.normal(0, 1, (64, 8)).astype(np.float32), "max", corrections=())
    meta = {**snn.metadata, "inputs": [{**snn.inputs[0], "sequence": True}]}
    proto = snn.proto
    next(p for p in proto.metadata_props if p.key == "onnx2snn").value = json.dumps(meta)
    sequence = onnx2snn.SNNModel(proto)
    x = rng.normal(0, 1, (10, 7, 8)).astype(np.float32)  # 7 steps, a different input each
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in ann.graph.initializer}
    theta = snn.thresholds["act1"]
    v, total = np.broadcast_to(0.5 * theta, (10, 12)).astype(np.float32), 0.0
    for t in range(7):
        s, v = if_step(x[:, t] @ weights["w1"].T + weights["b1"], v, theta)
        total = total + s @ weights["w2"].T + weights["b2"]
    forms = ["onnx"] + (["compiled"] if kernel.available() else [])
    for neurons in forms:
        session = onnx2snn.SNNSession(sequence, form="step", neurons=neurons)
        assert session.neurons == neurons
        np.testing.assert_allclose(session.run(x), total / 7, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(session.run(x, 3), session.run(x[:, :3]), rtol=0, atol=0)
