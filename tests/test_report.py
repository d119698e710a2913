"""The conversion report: every node and what became of it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx2snn
from onnx2snn.tools.main import main
from tests.helpers import const, make_model, tensor


def test_report_of_a_conversion(digits_cnn, digits, tmp_path):
    snn = onnx2snn.convert(digits_cnn, digits[0][:100])
    fates = {row["node"]: (row["op"], row["fate"]) for row in snn.report}
    assert {(op, fate) for op, fate in fates.values()} >= {
        ("Conv", "kept"),
        ("BatchNormalization", "folded"),
        ("Relu", "converted"),
        ("Gemm", "kept"),
    }
    assert set(fates) == {n.name for n in digits_cnn.graph.node}  # every node of the ANN, by name
    converted = [r for r in snn.report if r["fate"] == "converted"]
    assert len(converted) == 3 and all("threshold" in r["detail"] for r in converted)
    # the artifact keeps the rows of the nodes conversion changed; the kept ones are in its graph
    stored = onnx2snn.load(snn.save(tmp_path / "snn.onnx")).report
    assert stored == [r for r in snn.report if r["fate"] != "kept"] and len(stored) < len(snn.report)
    graph = {n.name: n.op_type for n in snn.proto.graph.node}
    assert all(graph[r["node"]] == r["op"] for r in snn.report if r["fate"] == "kept")


def two_bad_activations():
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
        helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
        helper.make_node("Relu", ["t"], ["r"], name="relu"),
        helper.make_node("LeakyRelu", ["r"], ["y"], name="leaky"),
        helper.make_node("Softmax", ["y"], ["p"], name="softmax"),
    ]
    return make_model(nodes, [tensor("x", ["N", 4])], [tensor("p", ["N", 4])], [const("w", np.eye(4))])


def test_every_refused_node_is_listed():
    with pytest.raises(onnx2snn.ConversionError, match="'tanh' \\(Tanh\\).*and 1 more unsupported: 'leaky'") as err:
        onnx2snn.convert(two_bad_activations(), np.ones((2, 4), np.float32))
    fates = {r["node"]: r["fate"] for r in err.value.report}
    assert fates == {"fc": "kept", "tanh": "refused", "relu": "kept", "leaky": "refused", "softmax": "moved"}
    analysis = {r["node"]: r["fate"] for r in onnx2snn.analyze(two_bad_activations())}
    assert analysis["relu"] == "converted" and analysis["tanh"] == "refused"


def test_cli_report_and_inspect(tmp_path, capsys):
    ann = tmp_path / "bad.onnx"
    onnx.save(two_bad_activations(), ann)
    np.save(tmp_path / "cal.npy", np.ones((2, 4), np.float32))
    report = tmp_path / "report.json"
    assert (
        main(
            [
                "convert",
                str(ann),
                "-o",
                str(tmp_path / "snn.onnx"),
                "--calibration",
                str(tmp_path / "cal.npy"),
                "--report",
                str(report),
            ]
        )
        == 1
    )
    assert not (tmp_path / "snn.onnx").exists()
    rows = json.loads(report.read_text())
    assert [r["fate"] for r in rows] == ["kept", "refused", "kept", "refused", "moved"]
    capsys.readouterr()
    assert main(["inspect", str(ann)]) == 0
    out = capsys.readouterr().out
    assert "not converted yet" in out and "tanh" in out and "refused" in out
