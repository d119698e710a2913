"""Every ONNX consumer installable from the package index runs the artifacts as
benchmarks/compat.py says: the inlined and unrolled forms everywhere, with outputs equal to
onnxruntime's; the step form (IF as a model-local function) where functions are expanded; a
simplified artifact still run by onnx2snn. The committed matrix (README) is what is measured here.

The consumers come with the ``compat`` extra; CI installs it, so there nothing is skipped."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def compat_module():
    spec = importlib.util.spec_from_file_location("compat", ROOT / "benchmarks" / "compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compat = compat_module()
# consumers that do not expand model-local functions: the step artifact is not for them
NO_FUNCTIONS = {"OpenVINO", "tract"}
PYTHON = [c for c in compat.CONSUMERS if c != "onnx2torch"]


def expected(consumer: str, form: str) -> str:
    return "fails" if form == "step" and consumer in NO_FUNCTIONS else "equal"


@pytest.fixture(scope="module")
def made():
    return compat.artifacts()


MEASURED: dict[tuple[str, str, str], dict] = {}  # (artifact, form, consumer) -> cell, measured once


def cell(made, name, form, consumer, folder):
    if (name, form, consumer) not in MEASURED:
        snn, x = made[name]
        MEASURED[name, form, consumer] = compat.check(consumer, snn, x, form, folder)
    return MEASURED[name, form, consumer]


def _skip_unless_importable(consumer: str) -> None:
    why = compat.importable(consumer)
    if why and not os.environ.get("CI"):
        pytest.skip(f"{consumer} is not installed (pip install -e '.[compat]'): {why}")


@pytest.mark.parametrize("form", compat.FORMS)
@pytest.mark.parametrize("consumer", PYTHON)
def test_consumer_runs_every_artifact(made, consumer, form, tmp_path):
    _skip_unless_importable(consumer)
    for name, (snn, _) in made.items():
        found = cell(made, name, form, consumer, tmp_path)
        if found["status"] == "n/a":
            assert form.startswith("unrolled") and any(i["encoding"] == "poisson" for i in snn.inputs)
            continue
        assert found["status"] == expected(consumer, form), (name, found)
        if found["status"] == "fails":  # the one reason it may: the IF function is not expanded
            assert found["reason"] == "does not expand model-local functions (`IF`)", (name, found)


def test_onnx2torch_where_it_imports(made, tmp_path):
    """onnx2torch imports torchvision; where that loads, the inlined form converts (its Less, Not,
    Cast have converters where GreaterOrEqual-16 and CastLike do not), and so does the unrolled
    form without Scan (it has no converter for Scan)."""
    why = compat.importable("onnx2torch")
    if why:
        pytest.skip(f"onnx2torch does not import here: {why}")
    for name, (snn, x) in made.items():
        for form in ("inlined", "unrolled-no-scan"):
            assert compat.check("onnx2torch", snn, x, form, tmp_path)["status"] in ("equal", "n/a"), (name, form)


def test_the_committed_matrix_is_what_is_measured_here(made, tmp_path):
    committed = json.loads((ROOT / "benchmarks" / "results" / "compat.json").read_text())["matrix"]
    assert list(committed) == list(made)
    for name in made:
        for form in compat.FORMS:
            for consumer in PYTHON:
                if compat.importable(consumer):
                    continue
                status = cell(made, name, form, consumer, tmp_path)["status"]
                assert committed[name][form][consumer]["status"] == status, (name, form, consumer)


def test_readme_shows_the_committed_matrix():
    table = (ROOT / "benchmarks" / "results" / "compat.md").read_text().strip()
    assert table in (ROOT / "README.md").read_text()
    data = json.loads((ROOT / "benchmarks" / "results" / "compat.json").read_text())
    assert table == compat.markdown(data["matrix"], data["notes"]).strip()
