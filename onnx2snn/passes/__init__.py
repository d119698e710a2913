"""Graph rewrites, one per file, each ``Graph -> Graph`` with its rule in its docstring."""

from .calibrate import activation_nodes, calibrate, parse_method, per_layer_only
from .check_supported import check_supported
from .correct_layers import correct_layers
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .infer_shapes import infer_shapes
from .matmul_add_to_gemm import matmul_add_to_gemm
from .name_nodes import name_nodes
from .relu_to_if import relu_to_if, state_names
from .remove_identity import remove_identity
from .strip_output_activation import output_activations, strip_output_activation

# canonical form: what every later pass may assume
CANONICALIZE = [
    name_nodes,
    infer_shapes,
    fold_constants,
    remove_identity,
    fold_batchnorm,
    matmul_add_to_gemm,
    infer_shapes,
]

__all__ = [
    "CANONICALIZE",
    "activation_nodes",
    "calibrate",
    "check_supported",
    "correct_layers",
    "fold_batchnorm",
    "fold_constants",
    "infer_shapes",
    "matmul_add_to_gemm",
    "name_nodes",
    "output_activations",
    "parse_method",
    "per_layer_only",
    "relu_to_if",
    "remove_identity",
    "state_names",
    "strip_output_activation",
]
