"""Data sets: what ``--data`` / ``--calibration`` and the Python API accept.

A data set is model-ready inputs ``x`` (float32) and optional integer labels ``y``. Specs:

- ``fashion-mnist[:train|:test]``        the Debian package's folder (dataset-fashion-mnist)
- ``fashion-mnist:DIR[:split]``, ``mnist:DIR[:split]``
                                          MNIST-format IDX files in DIR, or torchvision's
                                          ``DIR/<Name>/raw`` layout; ``.gz`` or not
- ``cifar10:DIR[:split]``                 the ``cifar-10-batches-py`` pickle layout
- ``digits[:split]``                      scikit-learn's 8x8 digits (1,400 train / 397 test)
- ``PATH.npz`` (``x`` [and ``y``]), ``PATH.npy`` (inputs only), or a folder of IDX files
- for a model with several data inputs, an npz with one array per input, named ``x_<name>``
  or ``<name>`` (and ``y``); in Python, a dict ``{input name: array}``

Without a split, calibration reads ``train`` and evaluation ``test``. Images load as uint8
NCHW; ``Preprocessing`` (scale, per-channel mean/std, layout) makes them model-ready and is
recorded in the artifact so that evaluation reuses it.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ConfigError, DataError
from .limits import available_memory, format_bytes

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")
IDX_PREFIX = {"train": "train", "test": "t10k"}
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass
class Preprocessing:
    """``x = ((x * scale) - mean[c]) / std[c]``, then NHWC -> NCHW if ``layout == "nhwc"``
    was asked for a channels-last model. ``scale=None`` means 1/255 for uint8 data, else 1."""

    scale: float | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    layout: str = "nchw"  # layout the model expects

    def __post_init__(self) -> None:
        if self.scale is not None and not (isinstance(self.scale, (int, float, np.number)) and np.isfinite(self.scale)):
            raise ConfigError(f"scale must be a finite number, got {self.scale!r}", option="scale")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is None:
                continue
            try:
                array = np.asarray(values, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be numbers, got {values!r}", option=name) from None
            if array.size == 0 or not np.all(np.isfinite(array)):
                raise ConfigError(f"{name} must be finite numbers, got {values!r}", option=name)
            if name == "std" and np.any(array == 0):
                raise ConfigError("std must not be zero", option="std")
            setattr(self, name, [float(v) for v in array])
        if self.layout not in ("nchw", "nhwc"):
            raise ConfigError(f"layout must be nchw or nhwc, got {self.layout!r}", option="layout")

    def apply(self, x: np.ndarray) -> np.ndarray:
        scale = self.scale if self.scale is not None else (1 / 255 if x.dtype == np.uint8 else 1.0)
        with np.errstate(over="ignore", invalid="ignore"):  # values past float32 are refused as infinite
            out = x.astype(np.float32) * np.float32(scale)
        if self.mean is not None or self.std is not None:
            if out.ndim < 2:
                raise DataError("mean/std need a channel axis")
            channels = out.shape[1]
            shape = (1, channels) + (1,) * (out.ndim - 2)
            for name, values in (("mean", self.mean), ("std", self.std)):
                if values is not None and len(values) not in (1, channels):
                    raise DataError(f"{name} has {len(values)} values, the data has {channels} channels")
            if self.mean is not None:
                out = out - np.broadcast_to(np.asarray(self.mean, np.float32), (channels,)).reshape(shape)
            if self.std is not None:
                std = np.broadcast_to(np.asarray(self.std, np.float32), (channels,)).reshape(shape)
                if np.any(std == 0):
                    raise DataError("std must not be zero")
                out = out / std
        if self.layout == "nhwc" and out.ndim == 4:
            out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Preprocessing:
        if not d:
            return cls()
        unknown = sorted(set(d) - {"scale", "mean", "std", "layout"})
        if unknown:
            raise ConfigError(f"preprocessing has no field {unknown[0]!r} (scale, mean, std, layout)")
        return cls(**d)


# model inputs: one array, or one per data input (by name) for a model with several
Inputs = np.ndarray | dict[str, np.ndarray]


def num_samples(x: Inputs) -> int:
    """Samples in ``x`` (the arrays of a dict share their first axis)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def take(x: Inputs, idx) -> Inputs:
    """``x[idx]``, for each array of a dict."""
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of some samples: [start, stop) of ``total``, as every worker
    computes it from the same total (the driver never needs the data itself). Parts start on
    multiples of ``align``, where one process's batches start too (so batches, and the Poisson
    spikes seeded by a batch's first sample, are the same cut or not)."""

    index: int = 0
    count: int = 1

    def bounds(self, total: int, align: int = 1) -> tuple[int, int]:
        blocks = -(-total // align)
        start = self.index * blocks // self.count * align
        stop = (self.index + 1) * blocks // self.count * align
        return min(start, total), min(stop, total)


WHOLE = Shard()  # all of the samples


@dataclass
class Dataset:
    x: Inputs
    y: np.ndarray | None
    source: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __len__(self) -> int:
        return num_samples(self.x)

    def _take(self, idx, what: str) -> Dataset:
        return Dataset(
            take(self.x, idx), None if self.y is None else self.y[idx], f"{self.source}{what}", self.preprocessing
        )

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` samples (all when None)."""
        return self if n is None or n >= len(self) else self._take(slice(0, n), f"[:{n}]")

    def sample(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded random subset of ``n`` samples, in their original order (all when None)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self._take(idx, f"[{n} sampled, seed {seed}]")


def as_dataset(data: Dataset | Inputs | str | os.PathLike, labels: np.ndarray | None = None) -> Dataset:
    """A Dataset from a Dataset, model-ready inputs (an array, or a dict of arrays by input
    name), or a spec (train split)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (np.ndarray, list, tuple, dict)):
        return _validated(Dataset(data, labels, "arrays" if isinstance(data, dict) else "array"))
    if not isinstance(data, (str, os.PathLike)):
        raise DataError(f"expected an array, a Dataset or a data spec, got a {type(data).__name__}")
    return load_data(data, split="train")


def _split_spec(spec: str, default_split: str) -> tuple[str, str | None, str]:
    """'name:DIR:split' -> (name, DIR or None, split)."""
    name, _, rest = spec.partition(":")
    split = default_split
    if rest in SPLITS:
        return name, None, rest
    for s in SPLITS:
        if rest.endswith(":" + s):
            rest, split = rest[: -len(s) - 1], s
    return name, rest or None, split


def load_data(spec: str | os.PathLike, split: str = "test", preprocessing: Preprocessing | None = None) -> Dataset:
    """Load a data set from a spec (see the module docstring); ``split`` is the default split."""
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"a data spec is a string or a path, got a {type(spec).__name__}")
    prep = preprocessing or Preprocessing()
    text = str(spec)
    name, folder, chosen = _split_spec(text, split)
    if name in ("mnist", "fashion-mnist"):
        base = Path(folder) if folder else (FASHION_MNIST_DIR if name == "fashion-mnist" else None)
        if base is None:
            raise DataError("mnist needs a folder: mnist:DIR (no MNIST files ship with this machine)")
        x, y = load_idx_dir(base, chosen, TORCHVISION_NAMES[name])
        return _finish(x, y, f"{name}:{chosen}", prep)
    if name == "cifar10":
        if not folder:
            raise DataError("cifar10 needs a folder: cifar10:DIR (the cifar-10-batches-py folder or its parent)")
        x, y = load_cifar10(Path(folder), chosen)
        return _finish(x, y, f"cifar10:{chosen}", prep)
    if name == "digits" and folder is None:
        return _finish(*_digits(chosen), f"digits:{chosen}", prep)

    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file or data set (known: fashion-mnist, mnist:DIR, cifar10:DIR, digits)")
    if path.is_dir():
        x, y = load_idx_dir(path, split)
        return _finish(x, y, f"{path}:{split}", prep)
    if path.suffix == ".npz":
        x, y = _load_npz(path)
        return _finish(x, y, str(path), prep)
    if path.suffix == ".npy":
        return _finish(_np_load(path), None, str(path), prep)
    raise DataError(f"{path}: unknown data format (expected .npz with 'x' [and 'y'], .npy, or an IDX folder)")


def _finish(x: Inputs, y: np.ndarray | None, source: str, prep: Preprocessing) -> Dataset:
    if isinstance(x, dict):
        for name, a in x.items():
            _check_array(a, source, name)
        return _validated(Dataset({name: prep.apply(a) for name, a in x.items()}, y, source, prep))
    _check_array(x, source)
    return _validated(Dataset(prep.apply(x), y, source, prep))


def _check_array(x: np.ndarray, source: str, name: str | None = None) -> None:
    """Numeric, with a batch axis and at least one sample (``name``: the input, of several)."""
    what = f"{source}: inputs" + (f" {name!r}" if name is not None else "")
    if x.dtype.kind not in "fiub":
        raise DataError(f"{what} must be numeric, got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{what} must have a batch axis and at least one more, got shape {x.shape}")
    if len(x) == 0:
        raise DataError(f"{source}: no samples" + (f" in input {name!r}" if name is not None else ""))


def _require(nbytes: int, source: str) -> None:
    """A DataError when loading ``nbytes`` (and their float32 copy) cannot fit in memory."""
    left = available_memory()
    if left is not None and nbytes > left:
        raise DataError(f"{source}: needs about {format_bytes(nbytes)} of memory, {format_bytes(left)} are free")


# --- numpy files ----------------------------------------------------------------------
def _npy_header(f: IO[bytes], size: int, source: str) -> None:
    """Read an .npy header from ``f`` (``size`` bytes in all) and refuse, before any data is
    read, an array the file cannot hold, one of Python objects, or one too large for memory."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise DataError(f"{source}: .npy format version {version[0]}.{version[1]} is not read here (1.0, 2.0)")
    if dtype.hasobject:
        raise DataError(f"{source}: holds Python objects, which are not loaded (only numeric arrays)")
    needed = math.prod(shape) * dtype.itemsize
    held = size - f.tell()
    if needed != held:
        raise DataError(
            f"{source}: its header says shape {list(shape)} of {dtype} ({format_bytes(needed)}), the file holds "
            f"{format_bytes(held)} of data"
        )
    _require(needed + math.prod(shape) * 4, source)


def _np_load(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            _npy_header(f, path.stat().st_size, str(path))
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except Exception as e:  # a corrupt file fails in many ways; none of them is ours
        raise DataError(f"{path}: unreadable as .npy ({type(e).__name__}: {_first_line(e)})") from e


def _load_npz(path: Path) -> tuple[Inputs, np.ndarray | None]:
    """``x`` [and ``y``]; or, for several data inputs, every array but ``y`` by name
    (``x_<name>`` or ``<name>``, matched to the model's inputs by ``check_inputs``)."""
    try:
        with zipfile.ZipFile(path) as archive:  # the headers of the arrays read below, first
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            read = ("x", "y") if "x" in members else members
            for key in read:
                info = members.get(key)
                if info is not None:
                    with archive.open(info) as f:
                        _npy_header(f, info.file_size, f"{path}['{key}']")
        with np.load(path, allow_pickle=False) as npz:
            y = npz["y"] if "y" in npz.files else None
            if "x" in npz.files:
                return npz["x"], y
            arrays = {name: npz[name] for name in npz.files if name != "y"}
            if not arrays:
                raise DataError(f"{path}: no array 'x' (found: {', '.join(npz.files) or 'none'})")
            return arrays, y
    except DataError:
        raise
    except Exception as e:  # a corrupt file fails in many ways; none of them is ours
        raise DataError(f"{path}: unreadable as .npz ({type(e).__name__}: {_first_line(e)})") from e


def _first_line(error: BaseException) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), "")[:160]


# --- IDX (MNIST format) ---------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes (magic 0x0000 08 <ndim>), gzipped or not; the header is
    read first, so a file that cannot hold what it claims is refused before its data is read."""
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw) if gzipped else raw
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: truncated IDX file ({len(head)} bytes)")
            zero, dtype, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
                raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {head.hex()})")
            header = f.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{ndim}I", header)
            expected = math.prod(dims)
            _require(expected * 5, str(path))
            data = f.read(expected)
            found = len(data) + len(f.read(1 << 20))  # anything after the data makes it a different file
            if found != expected:
                more = "or more " if found > len(data) else ""
                raise DataError(
                    f"{path}: IDX header says {expected} bytes of data for shape {list(dims)}, found {more}{found}"
                )
    except zlib.error as e:
        raise DataError(f"{path}: unreadable (corrupt gzip data: {_first_line(e)})") from e
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {_first_line(e)})") from e
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find_idx(folder: Path, split: str, kind: str) -> Path:
    stem = f"{IDX_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no {stem}[.gz] for the {split} split")


def load_idx_dir(folder: Path, split: str, torchvision_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images [N,1,H,W] uint8 and labels from a folder of IDX files (or torchvision's layout)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    candidates = [folder, folder / "raw"] + ([folder / torchvision_name / "raw"] if torchvision_name else [])
    base = next((c for c in candidates if any(c.glob("*-images-idx3-ubyte*"))), None)
    if base is None:
        raise DataError(f"{folder}: no MNIST-format IDX files here (nor in raw/ or {torchvision_name or 'NAME'}/raw/)")
    images = read_idx(_find_idx(base, split, "images"))
    labels_path = _find_idx(base, split, "labels")
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    return images[:, None], labels.astype(np.int64)


# --- CIFAR-10 ---------------------------------------------------------------------------
class _BatchUnpickler(pickle.Unpickler):
    """Reads CIFAR-10 batches (dicts of bytes, lists and uint8 arrays) and nothing else:
    the only globals a batch needs are numpy's array reconstructors."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        _require(3 * path.stat().st_size, str(path))
        batch = _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except DataError:
        raise
    except Exception as e:  # an untrusted pickle fails in many ways; none of them is ours
        raise DataError(f"{path}: not a CIFAR-10 batch ({type(e).__name__}: {_first_line(e)})") from e
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}, expected a dict)")
    batch = {k.decode(errors="replace") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if isinstance(data, (bytes, bytearray)):
        data = np.frombuffer(data, np.uint8)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size % 3072 or data.size == 0:
        raise DataError(f"{path}: 'data' must hold uint8 images of 3x32x32")
    if not isinstance(labels, list) or not all(isinstance(v, int) and 0 <= v < 2**63 for v in labels):
        raise DataError(f"{path}: 'labels' must be a list of integers")
    images = data.reshape(-1, 3, 32, 32)
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(labels)} labels for {len(images)} images")
    return images, np.asarray(labels, np.int64)


def load_cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N,3,32,32] uint8 and labels from ``cifar-10-batches-py`` (or its parent)."""
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing CIFAR-10 batch files: {', '.join(missing)}")
    parts = [_read_cifar_batch(folder / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --- scikit-learn digits ----------------------------------------------------------------
def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    cut = 1400
    return (x[:cut], d.target[:cut]) if split == "train" else (x[cut:], d.target[cut:])


# --- shared checks ----------------------------------------------------------------------
def _validated_array(x: Any, source: str, name: str | None = None) -> np.ndarray:
    """``x`` as a float32 array: numeric, finite, with a batch axis and at least one sample."""
    try:
        x = np.asarray(x)
    except ValueError as e:  # ragged nested lists
        raise DataError(f"{source}: not a rectangular array of numbers ({e})") from None
    _check_array(x, source, name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(x, source, name)
    return x


def _validated(ds: Dataset) -> Dataset:
    if isinstance(ds.x, dict):
        if not ds.x:
            raise DataError(f"{ds.source}: no inputs")
        x: Inputs = {k: _validated_array(v, ds.source, k) for k, v in ds.x.items()}
        sizes = {k: len(v) for k, v in x.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"{ds.source}: the inputs hold different numbers of samples ({sizes})")
    else:
        x = _validated_array(ds.x, ds.source)
    n = num_samples(x)
    y = ds.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu":
            raise DataError(f"{ds.source}: labels 'y' must be {n} integers, got shape {y.shape} dtype {y.dtype}")
        y = y.astype(np.int64)
    return Dataset(x, y, ds.source, ds.preprocessing)


def fit_input(x: np.ndarray, shape: Sequence[int | None]) -> np.ndarray:
    """Flatten images for a model whose input is 2-D, where the sizes agree ([N,1,28,28] -> [N,784])."""
    if len(shape) == 2 and x.ndim > 2 and shape[1] is not None and int(np.prod(x.shape[1:])) == shape[1]:
        return x.reshape(len(x), -1)
    return x


def _check_finite(x: np.ndarray, source: str, name: str | None = None) -> None:
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        what = f"{source}: inputs" + (f" {name!r}" if name is not None else "")
        raise DataError(f"{what} contain {bad} NaN or infinite values")


def check_input(x: np.ndarray, shape: Sequence[int | None], name: str, source: str = "input") -> np.ndarray:
    """``x`` as float32, or a DataError if it is not a numeric array of finite values whose
    shape fits the model input ``shape`` (``None`` marks a free dimension) with at least one
    sample."""
    try:
        x = fit_input(np.asarray(x), shape)
    except ValueError as e:  # ragged nested lists
        raise DataError(f"{source}: not a rectangular array of numbers ({e})") from None
    if x.dtype.kind not in "fiub":
        raise DataError(f"{source}: inputs must be numeric, got dtype {x.dtype}")
    expected = "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
    if x.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape[1:], x.shape[1:])):
        raise DataError(f"{source}: shape {list(x.shape)} does not match model input '{name}' of shape {expected}")
    if len(x) == 0:
        raise DataError(f"{source}: no samples")
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(x, source)
    return x


def check_inputs(
    x: Inputs, specs: Sequence[tuple[str, Sequence[int | None]]], source: str = "input"
) -> dict[str, np.ndarray]:
    """Model-ready arrays by input name for a model whose data inputs are ``specs`` (name,
    shape): one array for a single input, or a dict with one array per input, named
    ``<name>`` or ``x_<name>``; a DataError says what is missing or does not fit."""
    if not isinstance(x, dict):
        if len(specs) != 1:
            names = ", ".join(name for name, _ in specs)
            raise DataError(
                f"{source}: the model has {len(specs)} data inputs ({names}): give one array per input "
                "(a dict, or an npz with x_<name> arrays)"
            )
        name, shape = specs[0]
        return {name: check_input(x, shape, name, source)}
    out = {}
    for name, shape in specs:
        key = name if name in x else f"x_{name}" if f"x_{name}" in x else None
        if key is None:
            found = ", ".join(map(str, x)) or "none"
            raise DataError(f"{source}: no array for model input '{name}' (as '{name}' or 'x_{name}'; found: {found})")
        out[name] = check_input(x[key], shape, name, source)
    sizes = {name: len(a) for name, a in out.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"{source}: the inputs hold different numbers of samples ({sizes})")
    return out
