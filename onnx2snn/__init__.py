"""onnx2snn: convert ReLU networks into spiking neural networks, ONNX in, ONNX out.

Everything the command line uses is here; the layers underneath, bottom to top: errors, graph,
neuron, files, version; artifact, data; passes (rewrites); build; runtime; calibration;
convert; train."""

from .artifact import SNNModel, load, load_onnx
from .calibration import CORRECTIONS, METHODS, method_forms
from .convert import (
    DEFAULT_CORRECTIONS,
    DEFAULT_METHOD,
    DEFAULT_PER_CHANNEL,
    DEFAULT_TIMESTEPS,
    PIPELINE,
    ConvertOptions,
    analyze,
    convert,
)
from .data import Dataset, Preprocessing, load_data
from .demo import demo_data, demo_model
from .errors import (
    CalibrationError,
    ConfigError,
    ConversionError,
    DataError,
    ModelError,
    Onnx2SnnError,
)
from .export import from_torch
from .files import save_json, save_npz, save_onnx
from .neuron import if_step
from .passes import snn_to_ann as to_ann
from .plot import plot_accuracy, plot_activity, plot_evaluations
from .report import describe_calibration, describe_threshold, format_report, write_report
from .runtime import SNNSession, activity, ann_session, evaluate, format_activity, model_inputs, run_ann, unroll
from .train import ANN_DEFAULTS, SNN_DEFAULTS, TrainOptions, finetune, is_artifact, to_torch
from .version import __version__

__all__ = [
    "ANN_DEFAULTS",
    "CORRECTIONS",
    "CalibrationError",
    "ConfigError",
    "ConversionError",
    "ConvertOptions",
    "DEFAULT_CORRECTIONS",
    "DEFAULT_METHOD",
    "DEFAULT_PER_CHANNEL",
    "DEFAULT_TIMESTEPS",
    "DataError",
    "Dataset",
    "METHODS",
    "ModelError",
    "Onnx2SnnError",
    "PIPELINE",
    "Preprocessing",
    "SNNModel",
    "SNNSession",
    "SNN_DEFAULTS",
    "TrainOptions",
    "__version__",
    "activity",
    "analyze",
    "ann_session",
    "convert",
    "demo_data",
    "demo_model",
    "describe_calibration",
    "describe_threshold",
    "evaluate",
    "finetune",
    "format_activity",
    "format_report",
    "from_torch",
    "if_step",
    "is_artifact",
    "load",
    "load_data",
    "load_onnx",
    "method_forms",
    "model_inputs",
    "plot_accuracy",
    "plot_activity",
    "plot_evaluations",
    "run_ann",
    "save_json",
    "save_npz",
    "save_onnx",
    "to_ann",
    "to_torch",
    "unroll",
    "write_report",
]
