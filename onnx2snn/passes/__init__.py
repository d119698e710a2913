"""Graph rewrites, one per file, each ``Graph -> Graph`` with its rule in its docstring."""

import onnx_graphsurgeon as gs

from .check_supported import check_supported, find_unsupported
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .infer_shapes import infer_shapes
from .inline_neurons import inline_neurons
from .keep_outputs import keep_outputs
from .matmul_add_to_gemm import matmul_add_to_gemm
from .maxpool_to_spiking import maxpool_to_spiking, spiking_pool, spiking_pools
from .move_output_head import move_output_head
from .name_nodes import name_nodes
from .quantized_weights import fold_weight_quantize, integer_weight
from .relu_to_if import activation_nodes, neuron_layer, relu_to_if
from .remove_identity import remove_identity
from .snn_to_ann import snn_to_ann
from .strip_output_activation import output_activations, strip_output_activation

# canonical form: what every later pass may assume (after name_nodes, which the report needs first)
CANONICALIZE = [
    infer_shapes,
    fold_constants,
    fold_weight_quantize,
    remove_identity,
    fold_batchnorm,
    matmul_add_to_gemm,
    infer_shapes,
]


def canonicalize(graph: gs.Graph) -> gs.Graph:
    """Name the nodes, then every rewrite of CANONICALIZE in order."""
    graph = name_nodes(graph)
    for rewrite in CANONICALIZE:
        graph = rewrite(graph)
    return graph


__all__ = [
    "CANONICALIZE",
    "activation_nodes",
    "canonicalize",
    "check_supported",
    "find_unsupported",
    "fold_batchnorm",
    "fold_constants",
    "fold_weight_quantize",
    "infer_shapes",
    "inline_neurons",
    "integer_weight",
    "keep_outputs",
    "matmul_add_to_gemm",
    "move_output_head",
    "maxpool_to_spiking",
    "name_nodes",
    "neuron_layer",
    "output_activations",
    "relu_to_if",
    "remove_identity",
    "snn_to_ann",
    "spiking_pool",
    "spiking_pools",
    "strip_output_activation",
]
