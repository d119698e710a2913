"""The unrolled form gives the step form's numbers, within its memory budget, and deploys alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx2snn
from onnx2snn.runtime.unrolled import PER_STEP, batch_for_budget, unroll
from tests.helpers import export_torch


@pytest.fixture(scope="module")
def pooled_snn(digits):
    """MaxPool, a residual add, a softmax head and potential correction: every state kind."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 16, 10), nn.Softmax(dim=1))

        def forward(self, x):
            h = self.a(x)
            return self.head(torch.relu(self.b(h) + h))

    torch.manual_seed(0)
    model = export_torch(Net(), torch.tensor(digits[0][:1]), fold=True)
    return onnx2snn.convert(model, digits[0][:200], "mmse", corrections=("potential",), timesteps=8)


def test_forms_agree(pooled_snn, digits):
    x = digits[2][:50]
    step = onnx2snn.SNNSession(pooled_snn, form="step").run(x, 24, per_step=True)
    unrolled_session = onnx2snn.SNNSession(pooled_snn, form="unrolled")
    assert unrolled_session.form == "unrolled"
    unrolled = unrolled_session.run(x, 24, per_step=True)
    np.testing.assert_allclose(unrolled, step, atol=1e-5)


def test_unrolled_without_scan_gives_the_same_numbers(pooled_snn, digits):
    x = digits[2][:20]
    head = pooled_snn.outputs[0]
    plain = unroll(pooled_snn, 12, check=True, scan=False)
    assert "Scan" not in {n.op_type for n in plain.graph.node}
    outputs = [head + ".decoded", head + PER_STEP]

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            outputs, {"input": x}
        )

    for got, want in zip(run(plain), run(unroll(pooled_snn, 12))):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_memory_budget_splits_batches(pooled_snn, digits):
    x = digits[2][:40]
    small = batch_for_budget(pooled_snn, 16, 2_000_000)
    assert 1 <= small < 40
    split = onnx2snn.SNNSession(pooled_snn, form="unrolled", max_memory=2_000_000).run(x, 16)
    whole = onnx2snn.SNNSession(pooled_snn, form="unrolled").run(x, 16)
    np.testing.assert_allclose(split, whole, atol=1e-5)


def test_unrolled_model_runs_alone(pooled_snn, digits, tmp_path):
    from onnx2snn.tools.main import main

    path = tmp_path / "snn.onnx"
    pooled_snn.save(path)
    assert main(["unroll", str(path), "-o", str(tmp_path / "unrolled.onnx"), "--timesteps", "12"]) == 0
    model = onnx.load(str(tmp_path / "unrolled.onnx"))
    onnx.checker.check_model(model, full_check=True)
    for scan in (n for n in model.graph.node if n.op_type == "Scan"):  # no body reads its own scan output
        body = scan.attribute[0].g
        assert not {o.name for o in body.output[1:]} & {i for n in body.node for i in n.input}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = digits[2][:20]
    head = pooled_snn.outputs[0]
    decoded, per_step = session.run([head + ".decoded", head + PER_STEP], {"input": x})
    assert per_step.shape == (12, 20, 10)
    np.testing.assert_allclose(decoded, onnx2snn.SNNSession(pooled_snn, form="step").run(x, 12), atol=1e-5)
    np.testing.assert_allclose(decoded.sum(1), 1.0, rtol=1e-5)  # the softmax after the mean


def test_unrolled_form_refuses_poisson_and_static_batch(digits):
    from tests.helpers import mlp

    snn = onnx2snn.convert(mlp(), np.ones((4, 8), np.float32), encoding="poisson")
    with pytest.raises(onnx2snn.ConfigError, match="direct encoding"):
        onnx2snn.SNNSession(snn, form="unrolled")
    assert onnx2snn.SNNSession(snn).form == "step"
    with pytest.raises(onnx2snn.ConfigError, match="direct encoding"):
        unroll(snn, 4)


def test_auto_form_unrolls_small_batches_where_it_can():
    from tests.helpers import mlp

    x = np.random.default_rng(2).normal(size=(10, 8)).astype(np.float32)
    snn = onnx2snn.convert(mlp(), x)
    # with ONNX neurons, per-step calls would dominate; compiled ones take several steps a call
    assert onnx2snn.SNNSession(snn, batch_size=1, neurons="onnx").form == "unrolled"
    small = onnx2snn.SNNSession(snn, batch_size=1)
    assert small.form == ("step" if small.neurons == "compiled" else "unrolled")
    assert onnx2snn.SNNSession(snn, batch_size=256).form == "step"
    for options in ({}, {"neurons": "onnx"}):
        np.testing.assert_allclose(
            onnx2snn.SNNSession(snn, batch_size=1, **options).run(x, 16), onnx2snn.SNNSession(snn).run(x, 16), atol=1e-5
        )
    fixed = mlp()
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    assert (
        onnx2snn.SNNSession(onnx2snn.convert(fixed, x), batch_size=1).form == "step"
    )  # the unrolled form needs a free batch
    poisson = onnx2snn.convert(mlp(), np.abs(x) / np.abs(x).max(), encoding="poisson")
    assert onnx2snn.SNNSession(poisson, batch_size=1).form == "step"
