"""Writing files whole or not at all: every file onnx2snn writes goes through here.

A file is written to a temporary file beside it, created as ``open`` would create it (mode
0666 less the user's umask), then renamed over the target. An error or an interruption
before the rename removes the temporary file (the command line turns SIGTERM and SIGHUP into
exceptions as Python does SIGINT); the renames run with those signals held back. So the
target is either as it was or whole, and nothing else is left beside it. A file that cannot
be written is an OutputError naming it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx

from .errors import OutputError

LARGE_MODEL = 1_800_000_000  # bytes; protobuf refuses to serialize 2 GiB
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back inside the block (main thread only: signals are
    handled there) and act on them, in order, once it is over."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in SIGNALS:
        if signal.getsignal(sig) is not None:  # None: a handler set outside Python, left alone
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), sig)  # what the signal would have done


def _cannot_write(path: Path, error: OSError) -> OutputError:
    why = error.strerror or str(error)
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        why = f"{existing} is a file, not a folder"
    return OutputError(f"{path}: cannot write it ({why})")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: it replaces ``path`` only when the block ends
    without an error (see the module docstring)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = None
        while fd is None:
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                tmp = None  # another writer's: not ours to remove
        with os.fdopen(fd, "wb") as f:
            yield f
        with held_signals():
            os.replace(tmp, path)
            tmp = None
    except OSError as e:
        raise _cannot_write(path, e) from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write the whole file or nothing."""
    with atomic_file(path) as f:
        f.write(data)


def save_json(data: Any, path: str | os.PathLike) -> Path:
    """``data`` as indented JSON."""
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    return Path(path)


def save_text(text: str, path: str | os.PathLike) -> Path:
    write_atomic(path, (text.rstrip("\n") + "\n").encode())
    return Path(path)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Arrays in an uncompressed .npz, streamed to the file (no second copy in memory)."""
    with atomic_file(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """An ONNX model; past protobuf's 2 GB limit the weights go to ``<name>.data`` beside it."""
    path = Path(path)
    if model.ByteSize() < LARGE_MODEL:
        write_atomic(path, model.SerializeToString())
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            onnx.save_model(
                copy,
                str(Path(tmp) / path.name),
                save_as_external_data=True,
                location=f"{path.name}.data",
                size_threshold=1024,
            )
            with held_signals():  # the model and its weights are replaced together
                os.replace(Path(tmp) / f"{path.name}.data", path.parent / f"{path.name}.data")
                os.replace(Path(tmp) / path.name, path)
    except OSError as e:
        raise _cannot_write(path, e) from e
    return path
