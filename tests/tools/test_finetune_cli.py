"""``onnx2snn finetune`` end to end: an ANN quantized and written with integer weights, an SNN
tuned at a new T, the per-epoch log in the JSON report, errors as one line with nothing written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnx2snn
from onnx2snn.tools.main import main

pytest.importorskip("torch")


@pytest.fixture
def files(tmp_path, digits_cnn, digits):
    x, y = digits[0][:256], digits[1][:256]
    onnx.save(digits_cnn, tmp_path / "ann.onnx")
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "unlabelled.npz", x=x)
    return tmp_path


def test_finetune_an_ann_then_its_snn(files, capsys):
    ann_q = files / "ann_q4.onnx"
    argv = ["finetune", str(files / "ann.onnx"), "-o", str(ann_q), "--data", str(files / "train.npz")]
    argv += [
        "--weight-bits",
        "4",
        "--channel-wise",
        "--epochs",
        "2",
        "--samples",
        "200",
        "--json",
        str(files / "q.json"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 2:" in out and "4-bit weights per channel" in out and "on 200 samples" in out
    report = json.loads((files / "q.json").read_text())
    assert [row["epoch"] for row in report["log"]] == [1, 2]
    assert report["record"]["weight_bits"] == 4 and report["record"]["samples"] == 200
    assert onnx.TensorProto.INT4 in {t.data_type for t in onnx.load(str(ann_q)).graph.initializer}

    snn = files / "snn.onnx"
    assert main(["convert", str(ann_q), "-o", str(snn), "--calibration", str(files / "train.npz")]) == 0
    tuned = files / "snn_t2.onnx"
    argv = ["finetune", str(snn), "-o", str(tuned), "--data", str(files / "train.npz"), "--timesteps", "2"]
    assert main(argv + ["--epochs", "1", "--samples", "64", "-q"]) == 0
    assert "spiking, T = 2" in capsys.readouterr().out
    artifact = onnx2snn.load(tuned)
    assert artifact.timesteps == 2 and artifact.metadata["training"][-1]["samples"] == 64
    assert main(["inspect", str(tuned)]) == 0
    assert "trained    at T=2, 1 epoch on 64 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,message,code",
    [
        (["--data", "{unlabelled}"], "fine-tuning needs labels", 1),  # bad data: exit 1
        (["--data", "{train}", "--device", "cuda"], "device cuda: torch sees no CUDA device", 2),  # a bad option: 2
        (["--data", "{train}", "--weight-bits", "9"], "weight bits must be an integer from 2 to 8, got 9", 2),
        (["--data", "{train}", "--timesteps", "4"], "timesteps applies to an SNN artifact", 2),
    ],
)
def test_errors_are_one_line_and_write_nothing(files, capsys, extra, message, code):
    import torch

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = files / "out.onnx"
    paths = {"unlabelled": files / "unlabelled.npz", "train": files / "train.npz"}
    extra = [e.format(**paths) for e in extra]
    assert main(["finetune", str(files / "ann.onnx"), "-o", str(out), "--epochs", "1", *extra]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("onnx2snn finetune: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_workers_without_ray_is_a_bad_option(files, capsys):
    out = files / "out.onnx"
    args = ["finetune", str(files / "ann.onnx"), "-o", str(out), "--data", str(files / "train.npz"), "--workers", "2"]
    assert main(args) == 2
    assert "--workers needs --ray" in capsys.readouterr().err and not out.exists()
