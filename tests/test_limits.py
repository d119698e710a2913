"""Runs are bounded: T is at most MAX_TIMESTEPS, every run estimates its memory before it starts
and either fits its budget (batches split to stay under it) or refuses with the figure and the
option that changes it. The worst cases run under a capped address space and refuse cleanly."""

from __future__ import annotations

import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import onnx2snn
from onnx2snn.limits import MAX_TIMESTEPS, as_float, as_int, as_timesteps, format_bytes
from onnx2snn.runtime.budget import sample_bytes, state_elements
from tests.helpers import mlp

X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def snn():
    return onnx2snn.convert(mlp(), X, "max", corrections=())


def test_numbers_are_checked_by_name():
    assert as_int(np.int64(5), "n") == 5 and as_float(np.float32(0.25), "v") == 0.25
    for bad, match in ((True, "integer"), (2.5, "integer"), ("3", "integer"), (0, "positive")):
        with pytest.raises(onnx2snn.ConfigError, match=f"n must be .*{match}") as error:
            as_int(bad, "n")
        assert error.value.option == "n"
    with pytest.raises(onnx2snn.ConfigError, match="finite"):
        as_float(float("nan"), "v")
    with pytest.raises(onnx2snn.ConfigError, match="at most 65,536"):
        as_timesteps(MAX_TIMESTEPS + 1)
    assert format_bytes(64 << 20) == "64.0 MiB" and format_bytes(23 << 40) == "23.0 TiB"
    assert format_bytes(900) == "900 bytes"


def test_the_step_form_splits_batches_to_its_budget_with_the_same_outputs(snn):
    per_sample = sample_bytes(snn, "step", 8, 8, snn.outputs[0])
    budget = per_sample * 7 + 4 * 8 * len(X) * 4  # seven samples a batch, besides the per-step outputs
    small = onnx2snn.SNNSession(snn, form="step", max_memory=budget)
    assert small._plan("step", 8, 8, snn.outputs[0], 4 * 8 * len(X) * 4) == ("step", 7)
    np.testing.assert_allclose(
        small.run(X, 8, per_step=True), onnx2snn.SNNSession(snn, form="step").run(X, 8, per_step=True), atol=1e-5
    )
    assert state_elements(snn) == 16  # the one hidden layer's membranes


def test_the_unrolled_form_honours_its_budget_or_refuses(snn):
    """The unrolled form no longer takes 'at least one sample' whatever the budget."""
    one = sample_bytes(snn, "unrolled", 1000, 1, snn.outputs[0])
    session = onnx2snn.SNNSession(snn, form="unrolled", max_memory=one // 2)
    with pytest.raises(onnx2snn.ConfigError, match="over the memory budget") as error:
        session.run(X, 1000)
    assert error.value.option == "max_memory" and "step form" in str(error.value)
    # auto (ONNX neurons: compiled ones step anyway) unrolls a small batch, then falls back to the step form
    auto = onnx2snn.SNNSession(snn, batch_size=4, max_memory=one // 2, neurons="onnx")
    assert auto.form == "unrolled"
    np.testing.assert_allclose(auto.run(X, 1000), onnx2snn.SNNSession(snn, form="step").run(X, 1000), atol=1e-5)


def test_per_step_outputs_that_cannot_fit_are_refused_before_the_run(snn):
    session = onnx2snn.SNNSession(snn, max_memory=1 << 20)
    with pytest.raises(onnx2snn.ConfigError, match=r"outputs kept for every sample 2\.5 MiB"):
        session.run(X, 4096, per_step=True)
    assert session.run(X, 4096).shape == (40, 4)  # the last step alone fits


def test_evaluate_keeps_only_the_steps_asked_for(snn):
    """eval at T up to 65,536 holds counts per T, not every step's outputs for every sample."""
    data = onnx2snn.Dataset(X, np.arange(40) % 4, "x")
    report = onnx2snn.evaluate(snn, data, [1, 64, 512], max_memory=1 << 20)
    assert set(report["snn"]) == {"1", "64", "512"}
    reference = onnx2snn.SNNSession(snn).run(X, 512, per_step=True)[[0, 63, 511]].argmax(-1)
    for row, t in zip(reference, ("1", "64", "512")):
        assert report["snn"][t]["accuracy"] == pytest.approx(float((row == data.y).mean()))


CAP = 1_600_000_000  # bytes of address space: the interpreter, numpy, onnx and onnxruntime fit in it


def _capped(*argv: str) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    return subprocess.run(
        [sys.executable, "-m", "onnx2snn.tools.main", *argv],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )


def _zip_bomb(path, nbytes: int) -> None:
    """An .npz whose x holds ``nbytes`` of zeros, compressed to almost nothing."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 32, 8)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            zeros = bytes(1 << 24)
            for _ in range(nbytes // len(zeros)):
                f.write(zeros)


@pytest.mark.slow  # six runs of the command line and a gigabyte compressed
@pytest.mark.skipif(sys.platform != "linux", reason="address-space limits as Linux sets them")
def test_the_worst_cases_refuse_cleanly_under_a_capped_address_space(snn, tmp_path):
    path = tmp_path / "snn.onnx"
    snn.save(path)
    np.savez(tmp_path / "many.npz", x=np.repeat(X, 100, axis=0))  # 4,000 samples
    ok = _capped("run", str(path), "--data", str(tmp_path / "many.npz"), "-o", str(tmp_path / "ok.npz"))
    assert ok.returncode == 0, ok.stderr  # the cap leaves room for an ordinary run
    cases = {
        # every step's outputs of 4,000 samples at T = 65,536: 4.2 GB, with a budget that allows it
        "per-step": ["run", str(path), "--data", str(tmp_path / "many.npz"), "-o", str(tmp_path / "o.npz"),
                     "--per-step", "--timesteps", "65536", "--max-memory", "100000000"],
        # the unrolled form at T = 65,536 (17 MB a sample) with a budget of 8 MB
        "unrolled": ["run", str(path), "--data", str(tmp_path / "many.npz"), "-o", str(tmp_path / "o.npz"),
                     "--form", "unrolled", "--timesteps", "65536", "--max-memory", "8"],
        # T past the bound, for every command that simulates
        "eval T": ["eval", str(path), "--data", str(tmp_path / "many.npz"), "--timesteps", "1000000000"],
        "convert T": ["convert", str(path), "-o", str(tmp_path / "c.onnx"), "--calibration",
                      str(tmp_path / "many.npz"), "--timesteps", "1000000000"],
        # 1 GB of data behind a few kB of file
        "zip bomb": ["run", str(path), "--data", str(tmp_path / "bomb.npz"), "-o", str(tmp_path / "o.npz")],
    }  # fmt: skip
    _zip_bomb(tmp_path / "bomb.npz", 1 << 30)
    for name, argv in cases.items():
        result = _capped(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode in (1, 2), (name, result.stderr)
        assert len(lines) == 1 and "error:" in lines[0] and "internal error" not in lines[0], (name, result.stderr)
        assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
        words = {"per-step": "this process can still get", "unrolled": "--max-memory", "zip bomb": "of memory"}
        assert words.get(name, "--timesteps") in lines[0], (name, lines[0])
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "c.onnx").exists()


def test_level_wise_calibration_falls_back_where_its_stored_spikes_would_not_fit(monkeypatch):
    """Level-wise calibration stores T bits per neuron and sample: past its budget (a large T)
    calibration simulates layer by layer instead, with the same thresholds and corrections."""
    from onnx2snn.calibration import levelwise
    from onnx2snn.calibration.shapes import resolve_shapes
    from onnx2snn.graph import import_graph
    from onnx2snn.neuron import Neurons
    from onnx2snn.passes import canonicalize

    graph = resolve_shapes(canonicalize(import_graph(mlp())), X[:3])
    neurons = Neurons(timesteps=64)
    need = 64 * 16 * len(X) // 8 + 4 * 4 * 64 * 16  # stored bits of the 16 neurons, one sample's stage
    assert levelwise.fits(graph, neurons, X, budget=need)
    assert not levelwise.fits(graph, neurons, X, budget=need - 1)
    assert levelwise.fits(graph, neurons, {"x": X}, budget=need)  # inputs by name, as for several
    assert not levelwise.fits(graph, neurons, {"x": X}, budget=need - 1)
    if not levelwise.usable(graph):
        pytest.skip("the compiled kernel is not built here: calibration never takes the level-wise path")
    level_wise = onnx2snn.convert(mlp(), X, "spike-norm", corrections=("bias", "potential"), timesteps=64)
    monkeypatch.setattr(levelwise, "fits", lambda *args, **kwargs: False)
    layer_by_layer = onnx2snn.convert(mlp(), X, "spike-norm", corrections=("bias", "potential"), timesteps=64)
    for name in ("act1.threshold", "act1.current_shift", "act1.membrane_init"):  # membrane_init: a constant output
        np.testing.assert_allclose(level_wise.constant(name), layer_by_layer.constant(name), rtol=1e-5, atol=1e-6)
