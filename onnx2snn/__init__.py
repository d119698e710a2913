"""onnx2snn: convert ReLU networks into spiking neural networks, ONNX in, ONNX out.

Everything the command line uses is here; the layers underneath, bottom to top: errors, graph,
neuron, files, version; artifact, data; passes (rewrites); build; runtime; calibration;
convert; train; distributed; nir."""

from .artifact import SNNModel, is_artifact, load, load_onnx
from .build import inline
from .calibration import CORRECTIONS, METHODS, method_forms
from .convert import (
    DEFAULT_CORRECTIONS,
    DEFAULT_METHOD,
    DEFAULT_PER_CHANNEL,
    DEFAULT_TIMESTEPS,
    PIPELINE,
    ConvertOptions,
    analyze,
)
from .data import Dataset, Preprocessing, load_data
from .demo import demo_data, demo_model
from .distributed import convert, evaluate, finetune
from .errors import (
    CalibrationError,
    ConfigError,
    ConversionError,
    DataError,
    ModelError,
    Onnx2SnnError,
    OutputError,
)
from .export import from_torch
from .files import save_json, save_npz, save_onnx
from .limits import MAX_TIMESTEPS
from .neuron import if_step
from .nir import NIRExport, from_nir, read_nir, save_nir, to_nir
from .passes import snn_to_ann as to_ann
from .plot import plot_accuracy, plot_activity, plot_evaluations
from .report import describe_calibration, describe_threshold, format_report, write_report
from .runtime import (
    SNNSession,
    activity,
    ann_session,
    format_activity,
    model_inputs,
    resolve_providers,
    run_ann,
    unroll,
)
from .train import ANN_DEFAULTS, SNN_DEFAULTS, TrainOptions, to_torch
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
    "MAX_TIMESTEPS",
    "METHODS",
    "ModelError",
    "NIRExport",
    "Onnx2SnnError",
    "OutputError",
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
    "from_nir",
    "from_torch",
    "if_step",
    "inline",
    "is_artifact",
    "load",
    "load_data",
    "load_onnx",
    "method_forms",
    "model_inputs",
    "plot_accuracy",
    "plot_activity",
    "plot_evaluations",
    "read_nir",
    "resolve_providers",
    "run_ann",
    "save_json",
    "save_npz",
    "save_nir",
    "save_onnx",
    "to_ann",
    "to_torch",
    "to_nir",
    "unroll",
    "write_report",
]
