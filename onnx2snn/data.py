"""Data sets: what ``--data`` / ``--calibration`` and the Python API accept.

A data set is model-ready inputs ``x`` (float32) and optional integer labels ``y``.
Sources (a ``spec`` string):

- ``PATH.npz``   arrays ``x`` and optionally ``y``
- ``PATH.npy``   inputs only
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError


@dataclass
class Dataset:
    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.x)

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` samples (all when None)."""
        if n is None or n >= len(self):
            return self
        return Dataset(self.x[:n], None if self.y is None else self.y[:n], f"{self.source}[:{n}]")

    def sample(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded random subset of ``n`` samples, in their original order (all when None)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return Dataset(self.x[idx], None if self.y is None else self.y[idx], f"{self.source}[{n} sampled]")


def as_dataset(data: Dataset | np.ndarray | str | os.PathLike, labels: np.ndarray | None = None) -> Dataset:
    """A Dataset from a Dataset, an array of inputs, or a spec string/path."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        return _validated(Dataset(data, labels, "array"))
    return load_data(data)


def load_data(spec: str | os.PathLike) -> Dataset:
    """Load a data set from a spec (see the module docstring)."""
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".npz":
        return _validated(_load_npz(path))
    if path.suffix == ".npy":
        return _validated(Dataset(_np_load(path), None, str(path)))
    raise DataError(f"{path}: unknown data format (expected .npz with 'x' [and 'y'], or .npy)")


def _np_load(path: Path, **kwargs) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: unreadable ({e})") from e


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise DataError(f"{path}: no array 'x' (found: {', '.join(archive.files) or 'none'})")
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: unreadable ({e})") from e
    return Dataset(x, y, str(path))


def _validated(ds: Dataset) -> Dataset:
    x = ds.x
    if x.dtype.kind not in "fiub":
        raise DataError(f"{ds.source}: inputs must be numeric, got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{ds.source}: inputs must have a batch axis and at least one more, got shape {x.shape}")
    if len(x) == 0:
        raise DataError(f"{ds.source}: no samples")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise DataError(f"{ds.source}: inputs contain {bad} NaN or infinite values")
    y = ds.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise DataError(f"{ds.source}: labels 'y' must be {len(x)} integers, got shape {y.shape} dtype {y.dtype}")
        y = y.astype(np.int64)
    return Dataset(x, y, ds.source)


def check_input(x: np.ndarray, shape: Sequence[int | None], name: str, source: str = "input") -> np.ndarray:
    """``x`` as float32, or a DataError if its shape does not fit the model input ``shape``
    (``None`` marks a free dimension)."""
    x = np.asarray(x)
    expected = "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
    if x.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape[1:], x.shape[1:])):
        raise DataError(f"{source}: shape {list(x.shape)} does not match model input '{name}' of shape {expected}")
    return np.ascontiguousarray(x, dtype=np.float32)


def iter_batches(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]
