"""Error types. Raised where the fact is known, turned into one line at the CLI edge."""

from __future__ import annotations


class Onnx2SnnError(Exception):
    """Base class of every error onnx2snn raises on purpose."""


class ConversionError(Onnx2SnnError):
    """The ANN cannot be converted: names the node, its op type and why."""

    def __init__(self, message: str, node: str | None = None, op_type: str | None = None):
        self.node = node
        self.op_type = op_type
        self.problems: list[ConversionError] = []  # every unsupported node, when several are
        self.report: list[dict] | None = None  # the conversion report up to the failure
        if node is not None:
            where = f"node '{node}'" + (f" ({op_type})" if op_type else "")
            message = f"{where}: {message}"
        super().__init__(message)


class CalibrationError(Onnx2SnnError):
    """Thresholds cannot be calibrated from the data given."""


class DataError(Onnx2SnnError):
    """A data set, file or array is missing, unreadable or does not fit the model."""


class ModelError(Onnx2SnnError):
    """A model file is missing, not ONNX, or not an onnx2snn artifact."""


class ConfigError(Onnx2SnnError, ValueError):
    """A parameter is out of range (timesteps <= 0, unknown method, a memory budget too small
    for the run asked, ...). ``option``: the parameter's name (``v_init``), where known; the
    command line names its flag (``--v-init``) and exits with 2, as for any bad argument."""

    def __init__(self, message: str, option: str | None = None):
        self.option = option
        super().__init__(message)


class OutputError(Onnx2SnnError, OSError):
    """A result cannot be written (a read-only folder, a folder where a file should go, the
    input named as the output, a full disk): names the file and why. Nothing is left behind."""
