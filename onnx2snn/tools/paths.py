"""Where a command will write, checked before it reads anything: a file path must not be a
folder, nor one of the command's inputs, nor another of its outputs, and the nearest folder
that exists must be one this user can write in. A problem is a ConfigError naming the flag
(exit 2, like any bad argument), so that a long conversion or evaluation is never run only to
find it cannot keep its result."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import onnx2snn


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _nearest_folder(path: Path, flag: str) -> Path:
    """The nearest existing ancestor of ``path``: it must be a folder this user may write in."""
    existing = next(p for p in path.absolute().parents if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise onnx2snn.ConfigError(f"{path}: {existing} is a file, not a folder", option=flag)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise onnx2snn.ConfigError(f"{path}: no permission to write in {existing}", option=flag)
    return existing


def check_output(
    path: str | os.PathLike | None,
    flag: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    outputs: Iterable[str | os.PathLike | None] = (),
) -> None:
    """Refuse writing a file at ``path`` (the value of ``flag``) before any work starts."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise onnx2snn.ConfigError(f"{target} is a folder; name a file", option=flag)
    for source in inputs:
        if source is not None and _same(target, Path(source)):
            raise onnx2snn.ConfigError(f"{target} is also an input of this command; write elsewhere", option=flag)
    for other in outputs:
        if other is not None and _same(target, Path(other)):
            raise onnx2snn.ConfigError(f"{target} is already the destination of another output", option=flag)
    if target.exists() and not target.is_file():
        raise onnx2snn.ConfigError(f"{target} exists and is not a regular file", option=flag)
    _nearest_folder(target, flag)


def check_output_folder(path: str | os.PathLike, flag: str) -> None:
    """Refuse writing into the folder ``path`` before any work starts."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise onnx2snn.ConfigError(f"{folder} is a file, not a folder", option=flag)
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise onnx2snn.ConfigError(f"{folder}: no permission to write in it", option=flag)
        return
    _nearest_folder(folder / "x", flag)
