"""A real-size network converts and runs: ResNet-18 at 3x224x224 (benchmarks/realsize.py's
architecture and initialization, random weights), convert's defaults on 16 calibration images,
the artifact valid and run by plain onnxruntime. benchmarks/scale.py measures the full sizes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx2snn

torch = pytest.importorskip("torch")
BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.slow
def test_resnet18_at_224_converts_with_the_defaults_and_runs(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import realsize
    finally:
        sys.path.remove(str(BENCHMARKS))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (18, 3, 224, 224)).astype(np.float32)
    torch.manual_seed(0)
    ann = realsize.export(realsize.initialize(realsize.ARCHITECTURES["resnet18"](), x[:16]), tmp_path / "r18.onnx")
    snn = onnx2snn.convert(str(ann), x[:16], calibration_samples=16, batch_size=8)
    assert len(snn.layers) == 17 and snn.metadata["calibration"]["samples"] == 16
    path = snn.save(tmp_path / "r18_snn.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    out = onnx2snn.SNNSession(path).run(x[16:], timesteps=4)
    assert out.shape == (2, 1000) and np.isfinite(out).all()
    unrolled = onnx2snn.unroll(snn, 2)  # plain onnxruntime, no onnx2snn at run time
    session = ort.InferenceSession(unrolled.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: x[16:]}
    step = onnx2snn.SNNSession(path, form="step").run(x[16:], timesteps=2)
    np.testing.assert_allclose(session.run(None, feeds)[0], step, rtol=1e-4, atol=1e-4)
