# ruff: noqa: E501  (the catalogue keeps one case a line)
"""A catalogue of bad and hostile inputs to the command line. For every one: the exit code
(1 for bad input, 2 for a bad argument, never 3, which is kept for bugs), exactly one line on
stderr that names the file, node, tensor or option at fault, no traceback, nothing new left in
the folder, and an existing output untouched."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnx2snn
from onnx2snn.tools.main import main
from tests import badfiles as bad
from tests.helpers import mlp

PREVIOUS = b"an earlier result, which a failed command must leave as it is\n"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # placeholders: {ann} {snn} {cal} {test} {out} {tmp} (the case's folder)
    code: int
    words: tuple[str, ...]  # each must appear in the error line
    setup: Callable[[Path, dict], None] | None = None


def model(name: str, build: Callable[[], onnx.ModelProto]) -> Callable[[Path, dict], None]:
    return lambda tmp, files: bad.save(build(), tmp / name)


def artifact(how: str) -> Callable[[Path, dict], None]:
    return lambda tmp, files: bad.save(bad.tampered(files["snn"], how), tmp / "bad.onnx")


def write(name: str, data: bytes | str) -> Callable[[Path, dict], None]:
    def setup(tmp: Path, files: dict) -> None:
        (tmp / name).write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def npz(name: str, **arrays) -> Callable[[Path, dict], None]:
    return lambda tmp, files: np.savez(tmp / name, **arrays)


def folder(name: str) -> Callable[[Path, dict], None]:
    return lambda tmp, files: (tmp / name).mkdir()


def both(*setups: Callable[[Path, dict], None]) -> Callable[[Path, dict], None]:
    def setup(tmp: Path, files: dict) -> None:
        for s in setups:
            s(tmp, files)

    return setup


CONVERT = "convert {ann} -o {out} --calibration {cal}"
RUN = "run {snn} --data {test} -o {out}"
EVAL = "eval {snn} --data {test} --timesteps 4"
MISSING = "{tmp}/missing.onnx"  # options must be refused before the model is even looked for
RX = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)

CASES = [
    # --- models that are not what they claim -------------------------------------------------
    Case("missing model", "convert {tmp}/nope.onnx -o {out} --calibration {cal}", 1, ("nope.onnx", "no such file")),
    Case("model is a folder", "convert {tmp}/dir.onnx -o {out} --calibration {cal}", 1, ("dir.onnx", "a folder"), folder("dir.onnx")),
    Case("text as model", "convert {tmp}/t.onnx -o {out} --calibration {cal}", 1, ("t.onnx", "not an ONNX"), write("t.onnx", "hello")),
    Case("empty model file", "convert {tmp}/e.onnx -o {out} --calibration {cal}", 1, ("e.onnx", "not an ONNX"), write("e.onnx", b"")),
    Case("truncated model", "convert {tmp}/cut.onnx -o {out} --calibration {cal}", 1, ("cut.onnx",), write("cut.onnx", mlp().SerializeToString()[:-40])),
    Case("float16 model", "convert {tmp}/fp16.onnx -o {out} --calibration {cal}", 1, ("float16", "'x'"), model("fp16.onnx", bad.fp16_mlp)),
    Case("opset 99", "convert {tmp}/o99.onnx -o {out} --calibration {cal}", 1, ("o99.onnx", "opset 99"), model("o99.onnx", lambda: bad.opset(99))),
    Case("opset 0", "convert {tmp}/o0.onnx -o {out} --calibration {cal}", 1, ("o0.onnx", "opset 0"), model("o0.onnx", lambda: bad.opset(0))),
    Case("external data cut short", "convert {tmp}/ext.onnx -o {out} --calibration {cal}", 1, ("ext.onnx", "'w2'"), lambda tmp, f: bad.short_external_data(tmp)),
    Case("external data outside the folder", "convert {tmp}/escape.onnx -o {out} --calibration {cal}", 1, ("escape.onnx", "outside"), lambda tmp, f: bad.escaping_external_data(tmp)),
    Case("2.5 GB of dims, no data", "convert {tmp}/huge.onnx -o {out} --calibration {cal}", 1, ("huge.onnx", "'w1'", "holds 0"), model("huge.onnx", bad.huge_dims_no_data)),
    Case("graph with a cycle", "convert {tmp}/cycle.onnx -o {out} --calibration {cal}", 1, ("cycle.onnx", "cycle"), model("cycle.onnx", bad.cycle)),
    Case("tensor produced twice", "convert {tmp}/dup.onnx -o {out} --calibration {cal}", 1, ("dup.onnx", "'h'", "twice"), model("dup.onnx", bad.duplicate_output)),
    Case("inspect a cycle", "inspect {tmp}/cycle.onnx", 1, ("cycle.onnx", "cycle"), model("cycle.onnx", bad.cycle)),
    # --- models that cannot convert, named truthfully --------------------------------------------
    Case("sigmoid", "convert {tmp}/m.onnx -o {out} --calibration {cal}", 1, ("'act1'", "Sigmoid"), model("m.onnx", lambda: mlp(activation="Sigmoid"))),
    Case("no activation", "convert {tmp}/m.onnx -o {out} --calibration {cal}", 1, ("no Relu",), model("m.onnx", lambda: mlp(activation="Identity"))),
    Case("quantized ops", "convert {tmp}/q.onnx -o {out} --calibration {cal}", 1, ("quantize", "quantizes an activation"), model("q.onnx", bad.quantized)),
    Case("data-dependent If", "convert {tmp}/if.onnx -o {out} --calibration {cal}", 1, ("'branch'", "control flow"), model("if.onnx", bad.data_dependent_if)),
    Case("Loop", "convert {tmp}/loop.onnx -o {out} --calibration {cal}", 1, ("'repeat'", "control flow"), model("loop.onnx", bad.loop)),
    Case("custom op", "convert {tmp}/c.onnx -o {out} --calibration {cal}", 1, ("'odd'", "com.example"), model("c.onnx", lambda: bad.with_op("Frobnicate", "com.example"))),
    Case("standard op not supported", "convert {tmp}/e.onnx -o {out} --calibration {cal}", 1, ("'odd'", "Erf", "not supported"), model("e.onnx", lambda: bad.with_op("Erf"))),
    Case("two data inputs, one array", "convert {tmp}/two.onnx -o {out} --calibration {cal}", 1, ("cal.npz", "2 data inputs", "z"), model("two.onnx", bad.two_inputs)),
    Case("unknown output kept", CONVERT + " --outputs nope", 1, ("nope",)),
    # --- options, refused before any file is read (the model does not even exist) ----------------
    Case("method bogus", "convert " + MISSING + " -o {out} --calibration {cal} --method bogus", 2, ("--method", "bogus")),
    Case("percentile 150", "convert " + MISSING + " -o {out} --calibration {cal} --method percentile:150", 2, ("--method", "150")),
    Case("percentile text", "convert " + MISSING + " -o {out} --calibration {cal} --method percentile:high", 2, ("--method", "high")),
    Case("max takes no argument", "convert " + MISSING + " -o {out} --calibration {cal} --method max:3", 2, ("--method",)),
    Case("v-init nan", "convert " + MISSING + " -o {out} --calibration {cal} --v-init nan", 2, ("--v-init", "nan")),
    Case("v-init 1.5", "convert " + MISSING + " -o {out} --calibration {cal} --v-init 1.5", 2, ("--v-init", "1.5")),
    Case("v-init negative", "convert " + MISSING + " -o {out} --calibration {cal} --v-init -0.25", 2, ("--v-init", "-0.25")),
    Case("corrections bogus", "convert " + MISSING + " -o {out} --calibration {cal} --corrections bogus", 2, ("--corrections", "bogus")),
    Case("timesteps 0", "convert " + MISSING + " -o {out} --calibration {cal} --timesteps 0", 2, ("--timesteps",)),
    Case("convert T 10^9", "convert " + MISSING + " -o {out} --calibration {cal} --timesteps 1000000000", 2, ("--timesteps", "65,536")),
    Case("calibration samples 0", "convert " + MISSING + " -o {out} --calibration {cal} --calibration-samples 0", 2, ("--calibration-samples",)),
    Case("seed negative", "convert " + MISSING + " -o {out} --calibration {cal} --seed -1", 2, ("--seed",)),
    Case("scale nan", "convert " + MISSING + " -o {out} --calibration {cal} --scale nan", 2, ("--scale",)),
    Case("std zero", "convert " + MISSING + " -o {out} --calibration {cal} --std 0", 2, ("--std",)),
    Case("mean inf", "convert " + MISSING + " -o {out} --calibration {cal} --mean inf", 2, ("--mean",)),
    Case("unknown provider", "run " + MISSING + " --data {test} -o {out} --providers bogus", 2, ("--providers", "bogus")),
    Case("batch size 0", "run " + MISSING + " --data {test} -o {out} --batch-size 0", 2, ("--batch-size",)),
    Case("max memory 0", "run " + MISSING + " --data {test} -o {out} --max-memory 0", 2, ("--max-memory",)),
    Case("threads 0", "bench " + MISSING + " --threads 0", 2, ("--threads",)),
    Case("eval T range 10^9", "eval " + MISSING + " --data {test} --timesteps 1-1000000000", 2, ("--timesteps", "65,536")),
    Case("eval empty T range", "eval " + MISSING + " --data {test} --timesteps 8-4", 2, ("--timesteps", "8-4")),
    Case("eval limit 0", "eval " + MISSING + " --data {test} --limit 0", 2, ("--limit",)),
    Case("bench T 10^9", "bench " + MISSING + " --timesteps 1000000000", 2, ("--timesteps",)),
    Case("unroll T 10^9", "unroll " + MISSING + " -o {out} --timesteps 1000000000", 2, ("--timesteps",)),
    Case("run T 10^8", "run " + MISSING + " --data {test} -o {out} --per-step --timesteps 100000000", 2, ("--timesteps",)),
    Case("unknown command", "frobnicate", 2, ("frobnicate",)),
    Case("unrolled Poisson", RUN + " --form unrolled --timesteps 4", 2, ("--form", "direct encoding")),
    # --- memory: refused before it starts, with the figure and the option --------------------
    Case("per-step outputs over budget", RUN + " --per-step --timesteps 60000 --max-memory 1", 2, ("--max-memory", "MiB", "--per-step")),
    Case("unrolled over budget", RUN + " --form unrolled --timesteps 20000 --max-memory 1", 2, ("--max-memory", "MiB", "--form step")),
    # --- outputs ----------------------------------------------------------------------------------
    Case("-o is the input model", "convert {ann} -o {ann} --calibration {cal}", 2, ("-o/--output", "input")),
    Case("-o is the data", "run {snn} --data {test} -o {test}", 2, ("-o/--output", "input")),
    Case("-o links to the input", "unroll {snn} -o {tmp}/link.onnx", 2, ("-o/--output", "input"), lambda tmp, f: os.symlink(f["snn"], tmp / "link.onnx")),
    Case("--json is the model", "eval {snn} --data {test} --json {snn}", 2, ("--json", "input")),
    Case("--report is -o", CONVERT + " --report {out}", 2, ("--report",)),
    Case("-o is a folder", "convert {ann} -o {tmp}/d --calibration {cal}", 2, ("-o/--output", "folder"), folder("d")),
    Case("-o under a file", "convert {ann} -o {tmp}/f.txt/snn.onnx --calibration {cal}", 2, ("-o/--output", "f.txt", "not a folder"), write("f.txt", "x")),
    Case("--report is a folder", CONVERT + " --report {tmp}/d", 2, ("--report", "folder"), folder("d")),
    Case("--report under a file, model refused", "convert {tmp}/m.onnx -o {out} --calibration {cal} --report {tmp}/f.txt/r.txt", 2, ("--report",), both(write("f.txt", "x"), model("m.onnx", lambda: mlp(activation="Sigmoid")))),
    Case("--json is a folder", EVAL + " --json {tmp}/d", 2, ("--json", "folder"), folder("d")),
    Case("--plot is a folder", EVAL + " --plot {tmp}/d", 2, ("--plot", "folder"), folder("d")),
    Case("demo -o is a file", "demo -o {tmp}/f.txt", 2, ("-o/--output", "f.txt"), write("f.txt", "x")),
    # --- tampered artifacts -----------------------------------------------------------------------
    Case("metadata {}", "eval {tmp}/bad.onnx --data {test}", 1, ("bad.onnx", "metadata", "input"), artifact("empty metadata")),
    Case("metadata a list", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "JSON object"), artifact("list metadata")),
    Case("metadata not JSON", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "JSON"), artifact("not json")),
    Case("metadata nested 100,000 deep", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "metadata"), artifact("deep json")),
    Case("layer names a missing node", "unroll {tmp}/bad.onnx -o {out}", 1, ("bad.onnx", "ghost"), artifact("missing node")),
    Case("threshold deleted", "bench {tmp}/bad.onnx --timesteps 2", 1, ("bad.onnx", "act1.threshold"), artifact("threshold deleted")),
    Case("membrane renamed", "eval {tmp}/bad.onnx --data {test}", 1, ("bad.onnx", "act1.membrane"), artifact("membrane renamed")),
    Case("IF function deleted", RUN.replace("{snn}", "{tmp}/bad.onnx"), 1, ("bad.onnx", "function"), artifact("function deleted")),
    Case("timesteps text", "run {tmp}/bad.onnx --data {test} -o {out}", 1, ("bad.onnx", "timesteps"), artifact("timesteps text")),
    Case("timesteps 10^12", "run {tmp}/bad.onnx --data {test} -o {out}", 1, ("bad.onnx", "timesteps"), artifact("timesteps huge")),
    Case("format text", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "format"), artifact("format text")),
    Case("newer format", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "format 99"), artifact("newer format")),
    Case("preprocessing field", "eval {tmp}/bad.onnx --data {test}", 1, ("bad.onnx", "evil"), artifact("preprocessing field")),
    Case("activation op", "eval {tmp}/bad.onnx --data {test}", 1, ("bad.onnx", "Exp"), artifact("activation op")),
    Case("layers not a list", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "layers"), artifact("layers not list")),
    Case("input missing", "run {tmp}/bad.onnx --data {test} -o {out}", 1, ("bad.onnx", "nothing"), artifact("input missing")),
    Case("reset bogus", "inspect {tmp}/bad.onnx", 1, ("bad.onnx", "sometimes"), artifact("reset bogus")),
    Case("an ANN to eval", "eval {ann} --data {test}", 1, ("ann.onnx", "not an onnx2snn artifact")),
    Case("an ANN to --ann that is text", EVAL + " --ann {tmp}/t.onnx", 1, ("t.onnx", "not an ONNX"), write("t.onnx", "hello")),
    # --- data ---------------------------------------------------------------------------------------
    Case("missing data", "run {snn} --data {tmp}/none.npz -o {out}", 1, ("none.npz", "no such file")),
    Case("unknown data format", "run {snn} --data {tmp}/d.csv -o {out}", 1, ("d.csv", "unknown data format"), write("d.csv", "1,2")),
    Case("npz without x", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "no array for model input", "found: a"), npz("d.npz", a=np.ones((3, 8), np.float32))),
    Case("npz without x, 1-d", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "'a'", "batch axis"), npz("d.npz", a=np.ones(3))),
    Case("0-d x", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "shape ()"), npz("d.npz", x=np.float32(1))),
    Case("empty x", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "no samples"), npz("d.npz", x=np.ones((0, 8), np.float32))),
    Case("complex x", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "numeric"), npz("d.npz", x=np.ones((3, 8), np.complex64))),
    Case("object x (pickled)", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "objects"), npz("d.npz", x=np.array([{"a": 1}, None], dtype=object))),
    Case("NaN in run data", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "NaN"), npz("d.npz", x=np.where(np.arange(48).reshape(6, 8) == 5, np.nan, RX))),
    Case("inf in eval data", "eval {snn} --data {tmp}/d.npz", 1, ("d.npz", "infinite"), npz("d.npz", x=np.full((4, 8), np.inf, np.float32))),
    Case("wrong shape", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "does not match model input 'x'"), npz("d.npz", x=np.ones((3, 5), np.float32))),
    Case("labels not integers", "eval {snn} --data {tmp}/d.npz", 1, ("d.npz", "labels"), npz("d.npz", x=RX, y=np.linspace(0, 1, 6))),
    Case("labels too few", "eval {snn} --data {tmp}/d.npz", 1, ("d.npz", "labels"), npz("d.npz", x=RX, y=np.arange(2))),
    Case("npy claims 23 TiB", "run {snn} --data {tmp}/big.npy -o {out}", 1, ("big.npy", "header", "TiB"), lambda tmp, f: bad.npy_claiming(tmp / "big.npy", (6_000_000, 1_000_000))),
    Case("npy cut short", "run {snn} --data {tmp}/cut.npy -o {out}", 1, ("cut.npy", "header"), lambda tmp, f: bad.npy_claiming(tmp / "cut.npy", (6, 8), data=b"\0" * 100)),
    Case("npz input array claims 23 TiB", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "x_x", "TiB"), lambda tmp, f: bad.npz_claiming(tmp / "d.npz", "x_x", (6_000_000, 1_000_000))),
    Case("npz not a zip", "run {snn} --data {tmp}/d.npz -o {out}", 1, ("d.npz", "unreadable"), write("d.npz", "not a zip")),
    Case("IDX folder without files", "run {snn} --data {tmp}/idx -o {out}", 1, ("idx", "IDX"), folder("idx")),
    Case("IDX corrupt gz", "run {snn} --data {tmp}/idx -o {out}", 1, ("t10k-images", "corrupt gzip"), lambda tmp, f: bad.idx_folder(tmp / "idx", images=b"\x1f\x8b\x08\x00" + bytes(range(200)), labels=bad.gz(b"\0\0\x08\x01\0\0\0\0"), gz=True)),
    Case("IDX bad magic", "run {snn} --data {tmp}/idx -o {out}", 1, ("t10k-images", "magic"), lambda tmp, f: bad.idx_folder(tmp / "idx", images=b"\x00\x00\x0d\x03" + bytes(12))),
    Case("IDX claims more than it holds", "run {snn} --data {tmp}/idx -o {out}", 1, ("t10k-images", "header says"), lambda tmp, f: bad.idx_folder(tmp / "idx", images=bad.gz(b"\0\0\x08\x03" + (60_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(10)), gz=True)),
    Case("mnist without a folder", "run {snn} --data mnist -o {out}", 1, ("mnist needs a folder",)),
    Case("cifar10 missing folder", "run {snn} --data cifar10:{tmp}/nothing -o {out}", 1, ("nothing", "no such folder")),
    Case("cifar batch runs code", "run {snn} --data cifar10:{tmp}/c -o {out}", 1, ("test_batch", "refusing to load", "posix.system"), lambda tmp, f: bad.cifar_folder(tmp / "c", bad.evil_pickle())),
    Case("cifar batch of garbage", "run {snn} --data cifar10:{tmp}/c -o {out}", 1, ("test_batch", "not a CIFAR-10 batch"), lambda tmp, f: bad.cifar_folder(tmp / "c", bytes(range(256)))),
    Case("cifar batch a list", "run {snn} --data cifar10:{tmp}/c -o {out}", 1, ("test_batch", "expected a dict"), lambda tmp, f: bad.cifar_folder(tmp / "c", [1, 2, 3])),
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """An ANN, its SNN (direct encoding) and data, shared read-only by every case."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8)).astype(np.float32)
    np.savez(root / "cal.npz", x=x)
    np.savez(root / "test.npz", x=x[:6], y=np.arange(6) % 4)
    bad.save(mlp(), root / "ann.onnx")
    onnx2snn.convert(mlp(), x, "max", corrections=()).save(root / "snn.onnx")
    onnx2snn.convert(mlp(), np.abs(x) / 4, "max", corrections=(), encoding="poisson").save(root / "poisson.onnx")
    return {"ann": root / "ann.onnx", "snn": root / "snn.onnx", "cal": root / "cal.npz", "test": root / "test.npz"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_line_and_leaves_nothing(case: Case, files, tmp_path, capfd):
    inputs = dict(files)
    if case.id == "unrolled Poisson":
        inputs["snn"] = files["snn"].with_name("poisson.onnx")
    if case.setup:
        case.setup(tmp_path, files)
    out = tmp_path / ("out.npz" if case.argv.startswith("run") else "out.onnx")
    out.write_bytes(PREVIOUS)  # an earlier result that the failed command must not touch
    before = _snapshot(tmp_path)
    inputs_before = {name: path.read_bytes() for name, path in files.items()}
    argv = shlex.split(case.argv.format(**inputs, out=out, tmp=tmp_path))
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    captured = capfd.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == case.code, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("onnx2snn"), lines[0]
    assert "error:" in lines[0] and "internal error" not in lines[0] and "Traceback" not in captured.err
    for word in case.words:
        assert word in lines[0], lines[0]
    assert _snapshot(tmp_path) == before  # nothing written, nothing left behind, the old output whole
    assert {name: path.read_bytes() for name, path in files.items()} == inputs_before
    assert not (tmp_path / "pwned.txt").exists() and not Path("pwned.txt").exists()


def test_the_catalogue_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    commands = {c.argv.split()[0] for c in CASES}
    assert {"convert", "run", "eval", "inspect", "bench", "unroll", "demo"} <= commands


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_conversion(files, tmp_path, capfd):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["convert", str(files["ann"]), "-o", str(locked / "snn.onnx"), "--calibration", str(files["cal"])])
    finally:
        locked.chmod(0o700)
    err = capfd.readouterr().err.strip()
    assert code == 2 and "no permission to write" in err and len(err.splitlines()) == 1
    assert list(locked.iterdir()) == []


def test_a_write_that_fails_late_is_an_output_error(files, tmp_path, monkeypatch, capfd):
    """A folder that becomes unwritable after the checks (a full disk, a removed mount): the
    write fails as one line naming the file, exit 1, and no temporary file remains."""
    import onnx2snn.files

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx2snn.files.os, "replace", full_disk)
    out = tmp_path / "snn.onnx"
    code = main(["convert", str(files["ann"]), "-o", str(out), "--calibration", str(files["cal"])])
    err = capfd.readouterr().err.strip()
    assert code == 1 and err == f"onnx2snn convert: error: {out}: cannot write it (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_a_report_that_fails_late_does_not_hide_the_refusal(files, tmp_path, monkeypatch, capfd):
    bad.save(mlp(activation="Sigmoid"), tmp_path / "m.onnx")

    def unwritable(rows, path):
        raise onnx2snn.OutputError(f"{path}: cannot write it (Read-only file system)")

    monkeypatch.setattr(onnx2snn, "write_report", unwritable)
    argv = ["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "s.onnx"), "--calibration", str(files["cal"])]
    argv += ["--report", str(tmp_path / "r.txt")]
    assert main(argv) == 1
    err = capfd.readouterr().err.strip()
    assert err.startswith("onnx2snn convert: error: node 'act1' (Sigmoid): a sigmoid between layers")
    assert err.endswith(
        "(and the report was not written: " + str(tmp_path / "r.txt") + ": cannot write it (Read-only file system))"
    )
