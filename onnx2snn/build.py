"""Build the SNN artifact from a canonical ANN graph and calibrated neuron parameters, in two
steps that the conversion pipeline lists by name:

- ``spike``: every activation becomes an IF neuron (passes/relu_to_if.py) and every max-pool
  that spikes reach a spiking max-pool (passes/maxpool_to_spiking.py), each recorded under the
  names the rewrite gave its states and nodes;
- ``package``: the step-form ONNX model with the IF function and the metadata of the artifact's
  contract (artifact.py), checked by ONNX's checker.

Calibration methods that simulate the SNN built so far (Spike-Norm, the corrections) use
``build_snn``: both steps on the network truncated at the tensor they measure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from .artifact import SNNModel, attach_neuron
from .errors import ConversionError
from .graph import export_model, reached_from, shape_of
from .neuron import OP_TYPE, Corrections, Neurons
from .neurons import OP_TYPES as NEURON_OPS
from .passes import activation_nodes, maxpool_to_spiking, neuron_layer, relu_to_if, spiking_pool, spiking_pools


@dataclass
class SpikingGraph:
    """The graph after ``spike``, with what the artifact's metadata records of it."""

    graph: gs.Graph
    input: dict[str, Any]  # {"name", "shape"} of the data input
    outputs: list[str]  # the network's outputs (the states come after them)
    layers: list[dict[str, Any]]
    pools: list[dict[str, Any]]


def truncate(graph: gs.Graph, outputs: list[str]) -> gs.Graph:
    """A copy of ``graph`` computing only the tensors named."""
    g = graph.copy()
    tensors = g.tensors()
    g.outputs = [tensors[name] for name in outputs]
    for t in g.outputs:
        t.dtype = t.dtype or np.float32
    return g.cleanup()


def spike(
    graph: gs.Graph, thresholds: dict[str, np.ndarray], neurons: Neurons, corrections: Corrections
) -> SpikingGraph:
    """Every activation an IF neuron, every max-pool that spikes (or Poisson input) reach a
    spiking max-pool; ``graph`` itself is left as it is."""
    g = graph.copy()
    data_input = g.inputs[0]
    outputs = [t.name for t in g.outputs]
    layers = [
        neuron_layer(node, node.name in corrections.current, node.name in corrections.membrane_init)
        for node in activation_nodes(g)
    ]
    g = relu_to_if(g, thresholds, neurons.reset, neurons.v_init, corrections.current, neurons.spike_mode)
    neuron_ops = {OP_TYPE, *NEURON_OPS}
    sources = [n.outputs[0].name for n in g.nodes if n.op in neuron_ops]
    varying = reached_from(g, sources + ([data_input.name] if neurons.encoding == "poisson" else []))
    pools = [spiking_pool(node.name) for node in spiking_pools(g, varying)]
    g = maxpool_to_spiking(g, varying)
    g.cleanup().toposort()
    return SpikingGraph(g, {"name": data_input.name, "shape": shape_of(data_input)}, outputs, layers, pools)


def package(
    spiking: SpikingGraph,
    neurons: Neurons,
    corrections: Corrections,
    metadata: dict[str, Any] | None = None,
    check: bool = True,
) -> SNNModel:
    """The artifact: the spiking graph, the IF function and the metadata (``metadata`` adds to
    or overrides what the graph and ``neurons`` say)."""
    meta = {
        "input": spiking.input,
        "outputs": spiking.outputs,
        "output_activations": {},
        "decode": "mean",
        "encoding": neurons.encoding,
        "timesteps": neurons.timesteps,
        "reset": neurons.reset,
        "v_init": float(neurons.v_init),
        **({"spike_mode": "multi"} if neurons.spike_mode == "multi" else {}),
        "layers": spiking.layers,
        "pools": spiking.pools,
        **(metadata or {}),
    }
    proto = attach_neuron(export_model(spiking.graph), meta)
    for layer in spiking.layers:  # initial membranes: read by whoever drives the states
        if layer["membrane_init"]:
            value = np.asarray(corrections.membrane_init[layer["node"]], np.float32)
            proto.graph.initializer.append(numpy_helper.from_array(value, layer["membrane_init"]))
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as e:
            raise ConversionError(f"the converted model fails the ONNX checker: {str(e).splitlines()[0]}") from e
    return SNNModel(proto)


def build_snn(
    graph: gs.Graph,
    thresholds: dict[str, np.ndarray],
    neurons: Neurons,
    corrections: Corrections | None = None,
    outputs: list[str] | None = None,
) -> SNNModel:
    """The SNN of ``graph`` truncated at ``outputs`` (the head by default), unchecked: what
    calibration simulates."""
    corrections = corrections or Corrections()
    g = truncate(graph, outputs) if outputs is not None else graph
    return package(spike(g, thresholds, neurons, corrections), neurons, corrections, check=False)
