"""The committed accuracy table is what the code measures: a slice of it re-run here."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.helpers import requires_fashion_mnist

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def table_module():
    spec = importlib.util.spec_from_file_location("accuracy_table", ROOT / "benchmarks" / "accuracy_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_shows_the_committed_table():
    table = (RESULTS / "accuracy.md").read_text().strip()
    assert table in (ROOT / "README.md").read_text()
    rows = json.loads((RESULTS / "accuracy.json").read_text())
    assert table == table_module().markdown(rows).strip()


@pytest.mark.slow
@requires_fashion_mnist
@pytest.mark.parametrize("model", ["seed_cifar_net"])
def test_a_slice_of_the_table_reproduces(model):
    committed = next(r for r in json.loads((RESULTS / "accuracy.json").read_text()) if r["model"] == model)
    row = table_module().measure(model, committed["method"], limit=500)
    for key, expected in committed["slice_correct"].items():
        assert abs(row["slice_correct"][key] - expected) <= 1, (key, row["slice_correct"][key], expected)
    assert re.fullmatch(r"\d+", str(row["samples"]))
