"""onnx2snn export: the format by the output's suffix; --inline writes the step form with every IF
in standard operators, the same inputs, outputs, metadata and numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnx2snn
from onnx2snn.tools.main import main
from tests.test_artifact import _as_format_2, pooled_net


@pytest.fixture(scope="module")
def snn():
    x = np.random.default_rng(1).uniform(0, 1, (64, 2, 4, 4)).astype(np.float32)
    return onnx2snn.convert(pooled_net(), x, "max", corrections=("bias", "potential"), timesteps=8)


def test_export_inline_keeps_inputs_outputs_metadata_and_numbers(snn, tmp_path):
    path = snn.save(tmp_path / "snn.onnx")
    assert main(["export", str(path), "-o", str(tmp_path / "inlined.onnx"), "--inline"]) == 0
    model = onnx.load(str(tmp_path / "inlined.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert not model.functions and not any(n.domain == "onnx2snn" for n in model.graph.node)
    assert [i.domain for i in model.opset_import] == [""]
    assert [v.name for v in model.graph.input] == [v.name for v in snn.proto.graph.input]
    assert [v.name for v in model.graph.output] == [v.name for v in snn.proto.graph.output]
    inlined = onnx2snn.load(tmp_path / "inlined.onnx")
    assert {**snn.metadata, "inlined": True} == inlined.metadata
    x = np.random.default_rng(2).uniform(0, 1, (6, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        onnx2snn.SNNSession(inlined).run(x, 8, per_step=True), onnx2snn.SNNSession(snn).run(x, 8, per_step=True)
    )
    with pytest.raises(onnx2snn.ModelError, match="inlined; unroll needs the step artifact"):
        onnx2snn.unroll(inlined, 8)


def test_export_upgrades_an_older_artifact(snn, tmp_path):
    old = tmp_path / "old.onnx"
    old.write_bytes(_as_format_2(snn).SerializeToString())
    assert main(["export", str(old), "-o", str(tmp_path / "new.onnx")]) == 0
    meta = json.loads(
        next(p.value for p in onnx.load(str(tmp_path / "new.onnx")).metadata_props if p.key == "onnx2snn")
    )
    assert meta["format"] == 3 and meta["batch"] == "batch"


@pytest.mark.parametrize("suffix", [".txt", ".h5", ""])
def test_other_formats_are_refused_by_name(snn, tmp_path, capsys, suffix):
    path = snn.save(tmp_path / "snn.onnx")
    target = tmp_path / f"out{suffix}"
    assert main(["export", str(path), "-o", str(target)]) == 2  # a bad argument (ConfigError), named by its flag
    err = capsys.readouterr().err
    assert "is not supported (yet); formats: .onnx, .nir" in err and (suffix or "out") in err
    assert not target.exists()
