"""Writing files whole or not at all: every file onnx2snn writes goes through here."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

LARGE_MODEL = 1_800_000_000  # bytes; protobuf refuses to serialize 2 GiB


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write the whole file or nothing: a temporary file beside it, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(data: Any, path: str | os.PathLike) -> Path:
    """``data`` as indented JSON."""
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    return Path(path)


def save_text(text: str, path: str | os.PathLike) -> Path:
    write_atomic(path, (text.rstrip("\n") + "\n").encode())
    return Path(path)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Arrays in an uncompressed .npz."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """An ONNX model; past protobuf's 2 GB limit the weights go to ``<name>.data`` beside it."""
    path = Path(path)
    if model.ByteSize() < LARGE_MODEL:
        write_atomic(path, model.SerializeToString())
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        onnx.save_model(
            copy,
            str(Path(tmp) / path.name),
            save_as_external_data=True,
            location=f"{path.name}.data",
            size_threshold=1024,
        )
        os.replace(Path(tmp) / f"{path.name}.data", path.parent / f"{path.name}.data")
        os.replace(Path(tmp) / path.name, path)
    return path
