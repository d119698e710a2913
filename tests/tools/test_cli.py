"""The command line end to end: convert then eval, errors as one line and an exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from onnx2snn.tools.main import main
from tests.helpers import mlp


@pytest.fixture
def files(tmp_path, digits_cnn, digits):
    x_cal, _, x_test, y_test = digits
    ann = tmp_path / "ann.onnx"
    onnx.save(digits_cnn, ann)
    np.savez(tmp_path / "cal.npz", x=x_cal)
    np.savez(tmp_path / "test.npz", x=x_test, y=y_test)
    return tmp_path


def test_convert_then_eval_with_json_report(files, capsys):
    snn = files / "snn.onnx"
    assert (
        main(
            [
                "convert",
                str(files / "ann.onnx"),
                "-o",
                str(snn),
                "--calibration",
                str(files / "cal.npz"),
                "--method",
                "percentile:99.9",
                "--per-channel",
                "--timesteps",
                "16",
            ]
        )
        == 0
    )
    assert "3 IF layers" in capsys.readouterr().out
    report_path = files / "report.json"
    assert (
        main(
            [
                "eval",
                str(snn),
                "--data",
                str(files / "test.npz"),
                "--timesteps",
                "8,16,32,256",
                "--ann",
                str(files / "ann.onnx"),
                "--json",
                str(report_path),
                "-q",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert set(report["snn"]) == {"8", "16", "32", "256"}
    assert 0.85 < report["ann"]["accuracy"] <= 1.0
    for row in report["snn"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["agreement"] <= 1.0
    assert report["snn"]["256"]["agreement"] >= 0.97
    assert report["snn"]["256"]["agreement"] >= report["snn"]["8"]["agreement"]
    assert f"{100 * report['ann']['accuracy']:.2f}%" in printed
    # without --ann the ANN is rebuilt from the artifact: same ANN accuracy
    assert (
        main(
            [
                "eval",
                str(snn),
                "--data",
                str(files / "test.npz"),
                "--timesteps",
                "8",
                "--limit",
                "100",
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    assert json.loads(report_path.read_text())["samples"] == 100


def test_inspect_lists_layers(files, capsys):
    snn = files / "snn.onnx"
    main(["convert", str(files / "ann.onnx"), "-o", str(snn), "--calibration", str(files / "cal.npz")])
    capsys.readouterr()
    assert main(["inspect", str(snn)]) == 0
    out = capsys.readouterr().out
    assert "3 IF layers" in out and ".membrane_next" in out and "threshold" in out
    assert "mmse per channel + potential correction" in out  # the defaults


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "onnx2snn.tools.main", *args], capture_output=True, text=True)


def test_sigmoid_model_is_refused_in_one_line_without_output(tmp_path):
    model = tmp_path / "sig.onnx"
    onnx.save(mlp(activation="Sigmoid"), model)
    np.save(tmp_path / "cal.npy", np.ones((8, 8), np.float32))
    out = tmp_path / "snn.onnx"
    result = run_cli("convert", str(model), "-o", str(out), "--calibration", str(tmp_path / "cal.npy"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "onnx2snn convert: error: node 'act1' (Sigmoid): a sigmoid between layers has no rate-coded IF equivalent"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.npy", "sig.onnx"]  # nothing half-written


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_model", "missing.onnx: no such file"),
        ("not_onnx", "not an ONNX model"),
        ("empty_calibration", "no samples"),
        ("nan_calibration", "NaN"),
        ("wrong_shape", "does not match model input 'x'"),
        ("missing_data", "nodata.npz: no such file"),
    ],
)
def test_bad_convert_input_is_one_line(tmp_path, case, message):
    model = tmp_path / "ann.onnx"
    onnx.save(mlp(), model)
    cal = tmp_path / "cal.npz"
    x = np.ones((8, 8), np.float32)
    if case == "missing_model":
        model = tmp_path / "missing.onnx"
    elif case == "not_onnx":
        model = tmp_path / "text.onnx"
        model.write_text("this is no model")
    elif case == "empty_calibration":
        x = x[:0]
    elif case == "nan_calibration":
        x[2, 3] = np.nan
    elif case == "wrong_shape":
        x = np.ones((8, 3), np.float32)
    elif case == "missing_data":
        cal = tmp_path / "nodata.npz"
    if case != "missing_data":
        np.savez(cal, x=x)
    out = tmp_path / "snn.onnx"
    result = run_cli("convert", str(model), "-o", str(out), "--calibration", str(cal))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


def test_nonpositive_timesteps_are_refused(files):
    snn = files / "snn.onnx"
    main(["convert", str(files / "ann.onnx"), "-o", str(snn), "--calibration", str(files / "cal.npz")])
    for bad in ("0", "-4", "8,0"):
        result = run_cli("eval", str(snn), "--data", str(files / "test.npz"), "--timesteps", bad)
        assert result.returncode == 2 and "positive integer" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(
        "convert",
        str(files / "ann.onnx"),
        "-o",
        str(files / "x.onnx"),
        "--calibration",
        str(files / "cal.npz"),
        "--timesteps",
        "0",
    )
    assert result.returncode == 2 and not (files / "x.onnx").exists()


def test_eval_on_data_of_the_wrong_shape(files):
    snn = files / "snn.onnx"
    main(["convert", str(files / "ann.onnx"), "-o", str(snn), "--calibration", str(files / "cal.npz")])
    np.savez(files / "bad.npz", x=np.ones((3, 1, 28, 28), np.float32))
    result = run_cli("eval", str(snn), "--data", str(files / "bad.npz"))
    assert result.returncode == 1
    assert "shape [3, 1, 28, 28] does not match model input 'input' of shape [N, 1, 8, 8]" in result.stderr


def test_bench_reports_speed_and_profile(files, capsys):
    snn = files / "snn.onnx"
    main(["convert", str(files / "ann.onnx"), "-o", str(snn), "--calibration", str(files / "cal.npz")])
    out = files / "bench.json"
    assert (
        main(
            [
                "bench",
                str(snn),
                "--timesteps",
                "4",
                "--repeat",
                "1",
                "--batch-size",
                "8",
                "--profile",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["batch"] == 8 and result["timesteps"] == 4 and result["snn_seconds"] > 0
    assert result["vs_dense_limit"] == pytest.approx(result["snn_seconds"] / result["dense_limit_seconds"])
    ops = {row["op"] for row in result["profile"]}
    assert {"Conv", "HardSigmoid"} <= ops  # the IF body's ops are timed one by one
    assert abs(sum(row["share"] for row in result["profile"]) - 1.0) < 1e-6
    assert "dense limit" in capsys.readouterr().out


def test_run_writes_outputs_and_predictions(files, capsys):
    import onnx2snn

    snn = files / "snn.onnx"
    assert main(["convert", str(files / "ann.onnx"), "-o", str(snn), "--calibration", str(files / "cal.npz")]) == 0
    out = files / "out.npz"
    args = ["run", str(snn), "--data", str(files / "test.npz"), "-o", str(out), "--timesteps", "12", "--limit", "50"]
    assert main(args + ["--per-step"]) == 0
    assert "50 samples x 12 steps" in capsys.readouterr().out
    written = np.load(out)
    x = np.load(files / "test.npz")["x"][:50]
    expected = onnx2snn.SNNSession(str(snn), batch_size=16).run(x, 12, per_step=True)  # run's default batch
    np.testing.assert_allclose(written["per_step"], expected, rtol=1e-6)
    np.testing.assert_array_equal(written["outputs"], expected[-1])
    np.testing.assert_array_equal(written["predictions"], expected[-1].argmax(-1))
    # bad input: one line, exit 1, nothing written
    missing = files / "missing.npz"
    assert main(["run", str(snn), "--data", str(missing), "-o", str(files / "bad.npz")]) == 1
    assert "missing.npz" in capsys.readouterr().err
    assert not (files / "bad.npz").exists()


def test_eval_reports_activity(files, digits_cnn, digits, capsys):
    import onnx2snn

    snn = files / "snn.onnx"
    onnx2snn.convert(digits_cnn, digits[0][:100]).save(snn)
    out = files / "report.json"
    args = ["eval", str(snn), "--data", str(files / "test.npz"), "--limit", "40", "--timesteps", "4,12"]
    assert main(args + ["--activity", "--json", str(out), "--plot", str(files / "acc.png")]) == 0
    assert (files / "acc_activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "activity over 12 steps, 40 samples" in text and "MACs" in text
    activity = json.loads(out.read_text())["activity"]
    assert activity["timesteps"] == 12 and activity["samples"] == 40
    assert len(activity["layers"]) == 3 and all(0 <= layer["rate"] <= 1 for layer in activity["layers"])
    assert activity["snn_ops"] > 0 and activity["ann_macs"] > 0


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    """`onnx2snn inspect snn.onnx | head -1`: the closed pipe ends the command quietly."""
    import onnx2snn

    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    snn = tmp_path / "snn.onnx"
    onnx2snn.convert(mlp(), x).save(snn)
    reader = subprocess.Popen(
        [sys.executable, "-m", "onnx2snn.tools.main", "inspect", str(snn)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    reader.stdout.read(1)  # the first byte, then the reader goes away
    reader.stdout.close()
    stderr = reader.stderr.read().decode()
    reader.wait(timeout=60)
    assert "error" not in stderr
