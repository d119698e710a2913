"""onnx2snn: convert ReLU networks into spiking neural networks, ONNX in, ONNX out."""

__version__ = "0.1.0"

from .artifact import SNNModel, load, load_onnx  # noqa: E402
from .convert import analyze, convert  # noqa: E402
from .data import Dataset, Preprocessing, load_data  # noqa: E402
from .errors import (  # noqa: E402
    CalibrationError,
    ConfigError,
    ConversionError,
    DataError,
    ModelError,
    Onnx2SnnError,
)
from .export import from_torch  # noqa: E402
from .neuron import if_step  # noqa: E402
from .runtime import SNNSession  # noqa: E402
from .runtime.activity import activity  # noqa: E402

__all__ = [
    "CalibrationError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "Dataset",
    "ModelError",
    "Onnx2SnnError",
    "Preprocessing",
    "SNNModel",
    "SNNSession",
    "__version__",
    "activity",
    "analyze",
    "convert",
    "from_torch",
    "if_step",
    "load",
    "load_data",
    "load_onnx",
]
