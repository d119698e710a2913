"""onnx2snn export (.nir) and convert of a .nir file, end to end; errors as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnx2snn.tools.main import main
from tests.nir.helpers import inputs, nir_ready

pytest.importorskip("nir")


def test_export_then_convert_back_then_run(tmp_path, capsys):
    snn = nir_ready()
    snn.save(tmp_path / "snn.onnx")
    code = main(
        ["export", str(tmp_path / "snn.onnx"), "-o", str(tmp_path / "net.nir"), "--report", str(tmp_path / "r.json")]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "NIR graph" in out and "sinabs:" in out and "snntorch:" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["spike_mode"] == "single" and {r["node"] for r in report["nodes"]} >= {
        layer["node"] for layer in snn.layers
    }
    assert (
        main(["convert", str(tmp_path / "net.nir"), "-o", str(tmp_path / "back.onnx"), "--spike-mode", "single"]) == 0
    )
    assert "a sequence [N, T, 1, 8, 8]" in capsys.readouterr().out
    x = inputs(8)
    np.savez(tmp_path / "seq.npz", x=np.repeat(x[:, None], 12, axis=1))
    assert (
        main(["run", str(tmp_path / "back.onnx"), "--data", str(tmp_path / "seq.npz"), "-o", str(tmp_path / "o.npz")])
        == 0
    )
    assert "8 samples x 12 steps" in capsys.readouterr().out
    import onnx2snn

    expected = onnx2snn.SNNSession(snn).run(x, 12)
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["outputs"], expected, rtol=1e-4, atol=1e-5)
    # eval: accuracy per T on labelled sequences; no ANN to agree with
    labels = expected.argmax(axis=1)
    np.savez(tmp_path / "seq_y.npz", x=np.repeat(x[:, None], 12, axis=1), y=labels)
    report = tmp_path / "eval.json"
    args = ["eval", str(tmp_path / "back.onnx"), "--data", str(tmp_path / "seq_y.npz"), "--timesteps", "4,12"]
    assert main([*args, "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["snn"]["12"]["accuracy"] == 1.0 and result["snn"]["12"]["agreement"] is None


def test_export_errors_are_one_line(tmp_path, capsys):
    snn = nir_ready(v_init=0.5)
    snn.save(tmp_path / "snn.onnx")
    assert main(["export", str(tmp_path / "snn.onnx"), "-o", str(tmp_path / "net.nir")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "starts its membranes above zero" in err[0]
    assert not (tmp_path / "net.nir").exists()
    assert (
        main(["export", str(tmp_path / "snn.onnx"), "-o", str(tmp_path / "net.nir"), "--initial-membrane", "drop"]) == 0
    )
    # an unknown suffix is a bad argument (exit 2), named by its flag, as export refuses any
    assert main(["export", str(tmp_path / "snn.onnx"), "-o", str(tmp_path / "net.xyz")]) == 2
    assert "argument -o/--output: export to '.xyz' is not supported (yet); formats: .onnx, .nir" in (
        capsys.readouterr().err
    )


def test_converting_an_ann_still_needs_calibration(tmp_path, capsys):
    import onnx

    from tests.helpers import mlp

    onnx.save(mlp(), tmp_path / "ann.onnx")
    # a missing option is a bad argument: exit 2, named by its flag, nothing written
    assert main(["convert", str(tmp_path / "ann.onnx"), "-o", str(tmp_path / "snn.onnx")]) == 2
    assert "argument --calibration: converting an ANN needs calibration data" in capsys.readouterr().err
    assert not (tmp_path / "snn.onnx").exists()


def test_inspect_a_graph_read_from_nir(tmp_path, capsys):
    import onnx2snn

    onnx2snn.save_nir(onnx2snn.to_nir(nir_ready()), tmp_path / "net.nir")
    assert main(["convert", str(tmp_path / "net.nir"), "-o", str(tmp_path / "back.onnx")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "back.onnx")]) == 0
    out = capsys.readouterr().out
    assert "a sequence: one slice a step" in out and "LIF layers" in out and "read from  NIR" in out


def test_a_flag_of_the_other_format_is_refused(tmp_path, capsys):
    """export's flags belong to one format each: --inline to .onnx, the NIR ones to .nir."""
    snn = nir_ready()
    snn.save(tmp_path / "snn.onnx")
    assert main(["export", str(tmp_path / "snn.onnx"), "-o", str(tmp_path / "net.nir"), "--inline"]) == 2
    assert "argument --inline: applies to .onnx only, not .nir" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "snn.onnx"), "-o", str(tmp_path / "x.onnx"), "--no-relay"]) == 2
    assert "argument --no-relay: applies to .nir only, not .onnx" in capsys.readouterr().err
    assert not (tmp_path / "net.nir").exists() and not (tmp_path / "x.onnx").exists()
    # and converting a .nir file takes none of an ANN's calibration flags
    onnx2snn_nir = tmp_path / "net.nir"
    assert main(["export", str(tmp_path / "snn.onnx"), "-o", str(onnx2snn_nir)]) == 0
    args = ["convert", str(onnx2snn_nir), "-o", str(tmp_path / "back.onnx"), "--method", "max"]
    assert main(args) == 2
    assert "argument --method: applies to converting an ANN, not a NIR graph" in capsys.readouterr().err
