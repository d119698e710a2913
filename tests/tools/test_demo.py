"""`onnx2snn demo` end to end in a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_writes_table_report_and_plot(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "onnx2snn.tools.main", "demo", "-o", str(tmp_path / "out"), "--timesteps", "64"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["snn"]) == {str(t) for t in range(1, 65)}
    ann = report["ann"]["accuracy"]
    assert ann > 0.9
    assert report["snn"]["64"]["accuracy"] > ann - 0.02  # converges towards the ANN
    assert report["snn"]["64"]["agreement"] > report["snn"]["8"]["agreement"]
    table = result.stdout
    assert f"{100 * ann:.2f}%" in table and "SNN T=64" in table and "SNN T=1 " in table
    png = (tmp_path / "out" / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(tmp_path / "out" / "accuracy.png") as image:
        image.verify()
        assert image.size[0] > 400 and image.size[1] > 300
    import onnx2snn

    assert len(onnx2snn.load(tmp_path / "out" / "snn.onnx").layers) == 4
    activity = report["activity"]  # firing rates and operations at T=32
    assert activity["timesteps"] == 32 and activity["samples"] == report["samples"]
    assert 0 < activity["rate"] < 1 and activity["ops_ratio"] > 0
    assert "spikes per neuron per step" in table
    assert (tmp_path / "out" / "activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
