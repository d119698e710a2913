"""The bundled demo: a BatchNorm CNN trained on Fashion-MNIST, 500 calibration images and
1,000 test images ship inside the package (``onnx2snn/assets``; Fashion-MNIST is MIT-licensed)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from .data import Dataset, Preprocessing

MODEL = "fashion_mnist_cnn_bn.onnx"
DATA = "fashion_mnist_demo.npz"


def asset(name: str) -> Path:
    return Path(str(resources.files("onnx2snn") / "assets" / name))


def demo_data() -> tuple[Dataset, Dataset]:
    """(calibration, test) sets, scaled to [0, 1] as the model was trained."""
    prep = Preprocessing()
    with np.load(asset(DATA)) as bundle:
        calibration = Dataset(prep.apply(bundle["x_calibration"]), None, "demo calibration (500 train images)", prep)
        test = Dataset(
            prep.apply(bundle["x_test"]), bundle["y_test"].astype(np.int64), "demo test (1,000 test images)", prep
        )
    return calibration, test


def demo_model() -> Path:
    """The bundled ANN's file."""
    return asset(MODEL)
