"""Build the SNN artifact from a canonical ANN graph and calibrated neuron parameters, in two
steps that the conversion pipeline lists by name:

- ``spike``: every activation becomes an IF neuron (passes/relu_to_if.py) and every max-pool
  that spikes reach a spiking max-pool (passes/maxpool_to_spiking.py), each recorded under the
  names the rewrite gave its states and nodes;
- ``package``: the step-form ONNX model with the IF function and the metadata of the artifact's
  contract (artifact.py), checked by ONNX's checker.

``inline`` expands every neuron of an artifact into standard operators, for runtimes that do not
expand model-local functions.

Calibration methods that simulate the SNN built so far (Spike-Norm, the corrections) use
``build_snn``: both steps on the network truncated at the tensor they measure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .artifact import (
    METADATA_KEY,
    SNNModel,
    add_initial_membranes,
    attach_neuron,
    batch_symbol,
    metadata_text,
    name_batch,
)
from .errors import ConversionError
from .graph import export_model, import_graph, reached_from, shape_of
from .neuron import DOMAIN, OP_TYPE, Corrections, Neurons, start_membrane
from .neurons import OP_TYPES as NEURON_OPS
from .passes import (
    activation_nodes,
    inline_neurons,
    maxpool_to_spiking,
    neuron_layer,
    relu_to_if,
    spiking_pool,
    spiking_pools,
)


@dataclass
class SpikingGraph:
    """The graph after ``spike``, with what the artifact's metadata records of it."""

    graph: gs.Graph
    inputs: list[dict[str, Any]]  # {"name", "shape", "encoding"} of each data input
    outputs: list[str]  # the network's outputs (the states come after them)
    layers: list[dict[str, Any]]
    pools: list[dict[str, Any]]
    initial: dict[str, np.ndarray]  # each layer's initial membrane, by its ``membrane_init`` name


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
    inputs = [{"name": t.name, "shape": shape_of(t), "encoding": neurons.encoding_of(t.name)} for t in g.inputs]
    outputs = [t.name for t in g.outputs]
    layers = [neuron_layer(node, node.name in corrections.current) for node in activation_nodes(g)]
    initial = {
        layer["membrane_init"]: corrections.membrane_init.get(layer["node"])
        if layer["node"] in corrections.membrane_init
        else start_membrane(thresholds[layer["node"]], neurons.v_init)
        for layer in layers
        if layer["node"] in thresholds
    }
    g = relu_to_if(g, thresholds, neurons.reset, neurons.v_init, corrections.current, neurons.spike_mode)
    neuron_ops = {OP_TYPE, *NEURON_OPS}
    sources = [n.outputs[0].name for n in g.nodes if n.op in neuron_ops]
    spike_trains = [i["name"] for i in inputs if i["encoding"] == "poisson"]
    varying = reached_from(g, sources + spike_trains)
    pools = [spiking_pool(node.name) for node in spiking_pools(g, varying)]
    g = maxpool_to_spiking(g, varying)
    g.cleanup().toposort()
    return SpikingGraph(g, inputs, outputs, layers, pools, initial)


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
        "inputs": spiking.inputs,
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
    proto = export_model(spiking.graph)
    meta["batch"] = batch_symbol(proto, [i["name"] for i in spiking.inputs])
    proto = attach_neuron(add_initial_membranes(name_batch(proto, meta["batch"]), spiking.initial), meta)
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
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


def inline(snn: SNNModel, check: bool = True) -> SNNModel:
    """``snn`` with every IF node expanded into standard operators (passes/inline_neurons.py),
    for runtimes without model-local functions: the same inputs, outputs and metadata (marked
    ``inlined``: readers that need the IF nodes, such as ``unroll``, take the step artifact)."""
    graph = inline_neurons(import_graph(snn.proto))
    graph.functions = []
    proto = name_batch(export_model(graph, [i for i in snn.proto.opset_import if i.domain != DOMAIN]), snn.batch)
    proto.producer_name, proto.producer_version = snn.proto.producer_name, snn.proto.producer_version
    proto.doc_string = snn.proto.doc_string
    proto.metadata_props.extend(p for p in snn.proto.metadata_props if p.key != METADATA_KEY)
    metadata = {**snn.metadata, "inlined": True}
    proto.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=metadata_text(metadata)))
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise ConversionError(f"the inlined model fails the ONNX checker: {str(e).splitlines()[0]}") from e
    return SNNModel(proto, snn.source)
