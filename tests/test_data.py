"""Data loaders: real Fashion-MNIST, IDX and CIFAR-10 files written in their exact formats,
and every broken file named in a DataError."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import onnx2snn
from onnx2snn import DataError, Preprocessing
from onnx2snn.data import load_data
from tests.helpers import requires_fashion_mnist


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 12, dtype=np.uint8)
    write_idx(tmp_path / "plain", "test", images, labels)
    write_idx(tmp_path / "tv" / "MNIST" / "raw", "train", images, labels, gz=True)
    return tmp_path, images, labels


@requires_fashion_mnist
def test_real_fashion_mnist():
    test = load_data("fashion-mnist")
    assert test.x.shape == (10000, 1, 28, 28) and test.x.dtype == np.float32
    assert 0.0 <= test.x.min() and test.x.max() == 1.0
    assert np.bincount(test.y).tolist() == [1000] * 10
    train = load_data("fashion-mnist:train")
    assert len(train) == 60000 and train.source == "fashion-mnist:train"
    sub = train.sample(100, seed=3)
    assert len(sub) == 100 and np.array_equal(sub.x, train.sample(100, seed=3).x)
    assert not np.array_equal(sub.x, train.head(100).x)  # a random subset, not the first N


def test_idx_plain_and_torchvision_layouts(idx_folder):
    base, images, labels = idx_folder
    plain = load_data(base / "plain")
    np.testing.assert_allclose(plain.x[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(plain.y, labels)
    tv = load_data(f"mnist:{base / 'tv'}:train")
    np.testing.assert_array_equal(tv.y, labels)
    raw = load_data(f"mnist:{base / 'tv'}", split="train", preprocessing=Preprocessing(scale=1.0))
    np.testing.assert_array_equal(raw.x[:, 0], images)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-10], "IDX header says"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b"\x00\x00\x0d\x03" + b[4:], "not an IDX file of unsigned bytes"),
        (lambda b: b"\x12\x34" + b[2:], "not an IDX file"),
        (lambda b: gzip.compress(b)[:30], "unreadable"),
    ],
)
def test_broken_idx_files_are_named(idx_folder, damage, message):
    base, _, _ = idx_folder
    path = base / "plain" / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        load_data(base / "plain")
    assert str(path) in str(err.value)


def test_idx_label_count_must_match(idx_folder):
    base, _, _ = idx_folder
    (base / "plain" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="5 labels for 12 images"):
        load_data(base / "plain")


def write_cifar(folder: Path, n: int = 6, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Batches as the original files hold them: python-2 pickles with bytes keys."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return data, labels


def test_cifar10_layout(tmp_path):
    data, labels = write_cifar(tmp_path / "cifar-10-batches-py")
    test = load_data(f"cifar10:{tmp_path}")
    assert test.x.shape == (6, 3, 32, 32)
    np.testing.assert_allclose(test.x.reshape(6, -1), data / 255.0, rtol=1e-6)
    assert test.y.tolist() == labels
    train = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}:train")
    assert len(train) == 30
    norm = load_data(f"cifar10:{tmp_path}", preprocessing=Preprocessing(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    np.testing.assert_allclose(norm.x, (test.x - 0.5) / 0.25, rtol=1e-6)
    nhwc = load_data(f"cifar10:{tmp_path}", preprocessing=Preprocessing(layout="nhwc"))
    assert nhwc.x.shape == (6, 32, 32, 3)


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_anything_but_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load") as err:
        load_data(f"cifar10:{tmp_path}")
    assert "test_batch" in str(err.value)
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="expected a dict"):
        load_data(f"cifar10:{tmp_path}")
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00(")
    with pytest.raises(DataError, match="not a CIFAR-10 batch"):
        load_data(f"cifar10:{tmp_path}")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing CIFAR-10 batch files: data_batch_3"):
        load_data(f"cifar10:{tmp_path}:train")


def test_npz_npy_and_digits(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2), np.float32), y=np.array([0, 1, 2]))
    assert load_data(tmp_path / "d.npz").y.tolist() == [0, 1, 2]
    np.savez(tmp_path / "nox.npz", y=np.ones(3, np.int64))
    with pytest.raises(DataError, match="no array 'x'"):
        load_data(tmp_path / "nox.npz")
    np.savez(tmp_path / "flat.npz", a=np.ones(3))  # one array per input: each needs a batch axis
    with pytest.raises(DataError, match="inputs 'a' must have a batch axis"):
        load_data(tmp_path / "flat.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz: unreadable"):
        load_data(tmp_path / "bad.npz")
    np.savez(tmp_path / "labels.npz", x=np.ones((3, 2)), y=np.array([0.5, 1, 2]))
    with pytest.raises(DataError, match="labels 'y' must be 3 integers"):
        load_data(tmp_path / "labels.npz")
    with pytest.raises(DataError, match="no such file or data set"):
        load_data(tmp_path / "nothing.npz")
    digits = onnx2snn.load_data("digits:train")
    assert digits.x.shape == (1400, 1, 8, 8) and digits.x.max() <= 1.0


def test_images_are_flattened_for_an_mlp():
    from onnx2snn.data import check_input

    x = np.zeros((4, 1, 28, 28), np.float32)
    assert check_input(x, [None, 784], "input").shape == (4, 784)
    with pytest.raises(DataError, match="does not match"):
        check_input(x, [None, 100], "input")


def test_one_array_per_input(tmp_path):
    from onnx2snn.data import check_inputs

    specs = [("image", [None, 1, 4, 4]), ("side", [None, 3])]
    np.savez(tmp_path / "two.npz", x_image=np.ones((5, 1, 4, 4)), side=np.zeros((5, 3)), y=np.arange(5))
    data = load_data(tmp_path / "two.npz")
    assert len(data) == 5 and data.y.tolist() == [0, 1, 2, 3, 4]
    feeds = check_inputs(data.x, specs, data.source)
    assert {k: v.shape for k, v in feeds.items()} == {"image": (5, 1, 4, 4), "side": (5, 3)}
    assert data.head(2).x["side"].shape == (2, 3) and len(data.sample(3, seed=1)) == 3
    with pytest.raises(DataError, match="no array for model input 'side' \\(as 'side' or 'x_side'; found: image\\)"):
        check_inputs({"image": feeds["image"]}, specs)
    with pytest.raises(DataError, match="the model has 2 data inputs \\(image, side\\)"):
        check_inputs(feeds["image"], specs)
    np.savez(tmp_path / "uneven.npz", x_image=np.ones((5, 1, 4, 4)), side=np.zeros((4, 3)))
    with pytest.raises(DataError, match="different numbers of samples"):
        load_data(tmp_path / "uneven.npz")
