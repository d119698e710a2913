"""Calibration: thresholds from the ANN's activations or from the SNN built so far, and the
training-free corrections. It runs the ANN and simulates truncated SNNs, so it stands above
``build`` and ``runtime``; the rewrites in ``passes`` never depend on it."""

from .corrections import CORRECTIONS, check_corrections, correct_layers
from .methods import METHODS, Method, calibrate, method_forms, parse_method
from .shapes import PROBE, resolve_shapes

__all__ = [
    "CORRECTIONS",
    "METHODS",
    "PROBE",
    "Method",
    "calibrate",
    "check_corrections",
    "correct_layers",
    "method_forms",
    "parse_method",
    "resolve_shapes",
]
