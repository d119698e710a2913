"""Every file onnx2snn writes is whole or absent: written with the user's umask, never left
half-written or beside a temporary file when the command is interrupted (SIGINT, SIGTERM,
SIGHUP) at any point, and refused as an OutputError naming it when it cannot be written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import onnx2snn
from onnx2snn.files import atomic_file, save_json, save_npz, save_text, write_atomic
from tests.helpers import mlp

PREVIOUS = b"the previous result\n"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_take_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        written = [
            save_json({"a": 1}, tmp_path / "r.json"),
            save_text("t", tmp_path / "r.txt"),
            save_npz(tmp_path / "o.npz", x=np.ones(3)),
            onnx2snn.save_onnx(mlp(), tmp_path / "m.onnx"),
        ]
        onnx2snn.plot_accuracy({"a": {1: 0.5, 2: 0.7}}, tmp_path / "p.png")
        written.append(tmp_path / "p.png")
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(PREVIOUS)
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half of it")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == PREVIOUS and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    "where, reason",
    [("folder", "Is a directory"), ("under a file", "f.txt is a file, not a folder")],
)
def test_an_unwritable_path_is_an_output_error(tmp_path, where, reason):
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    path = tmp_path / "folder" if where == "folder" else tmp_path / "f.txt" / "out.json"
    with pytest.raises(onnx2snn.OutputError, match=reason) as error:
        write_atomic(path, b"data")
    assert str(path) in str(error.value) and isinstance(error.value, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "folder"]
    assert not any((tmp_path / "folder").iterdir())


# A command whose result is written slowly: the test interrupts it in the middle of the write
# (once the temporary file exists) or during the rename that publishes it.
SLOW_WRITE = textwrap.dedent(
    """
    import sys, time, numpy as np, onnx2snn.files as files
    from onnx2snn.tools.main import main
    when = sys.argv[1]
    real_savez, real_replace = np.savez, files.os.replace

    def slow_savez(f, **arrays):
        if when == "write":
            f.write(b"part of the arrays")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        real_savez(f, **arrays)

    def replace(src, dst):
        if when == "rename":
            print("writing", flush=True)
            time.sleep(1)  # the signal arrives while the rename is held
        real_replace(src, dst)

    np.savez, files.os.replace = slow_savez, replace
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.fixture(scope="module")
def snn_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("snn")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    onnx2snn.convert(mlp(), x, "max", corrections=()).save(root / "snn.onnx")
    np.savez(root / "x.npz", x=x)
    return root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("when", ["write", "rename"])
def test_an_interrupted_write_leaves_the_output_whole_or_untouched(snn_files, tmp_path, sig, when):
    out = tmp_path / "out.npz"
    out.write_bytes(PREVIOUS)
    argv = ["run", str(snn_files / "snn.onnx"), "--data", str(snn_files / "x.npz"), "-o", str(out), "--timesteps", "4"]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, when, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while process.stdout.readline().strip() != "writing":
        assert process.poll() is None, process.stderr.read()
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + sig, err
    assert err.strip().splitlines() == [f"onnx2snn run: interrupted{'' if sig == signal.SIGINT else f' ({sig.name})'}"]
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left
    if when == "write":
        assert out.read_bytes() == PREVIOUS  # interrupted before the rename: untouched
    else:
        assert np.load(out)["outputs"].shape == (16, 4)  # the rename went through whole


@pytest.mark.slow  # three whole command-line conversions
@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_convert_interrupted_at_any_time_leaves_nothing_half_written(snn_files, tmp_path, delay):
    """SIGTERM at some moment of a whole conversion: the artifact is absent or loads."""
    import onnx

    onnx.save(mlp(), tmp_path / "ann.onnx")
    out = tmp_path / "snn.onnx"
    argv = ["convert", str(tmp_path / "ann.onnx"), "-o", str(out), "--calibration", str(snn_files / "x.npz")]
    process = subprocess.Popen(
        [sys.executable, "-m", "onnx2snn.tools.main", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), err
    assert "Traceback" not in err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names in (["ann.onnx"], ["ann.onnx", "snn.onnx"]), names
    if out.exists():
        assert onnx2snn.load(out).layers


def test_held_signals_are_delivered_after_the_block():
    code = textwrap.dedent(
        """
        import os, signal, sys
        from onnx2snn.files import held_signals
        seen = []
        signal.signal(signal.SIGTERM, lambda s, f: seen.append("handled"))
        with held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            seen.append("block finished")
        print(",".join(seen))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "block finished,handled", result.stderr
