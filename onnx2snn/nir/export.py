"""An SNN artifact as a NIR graph (the Neuromorphic Intermediate Representation, ``nir`` 1.0.x).

Our IF neuron emits spikes of amplitude theta; NIR's emits unit spikes. Every tensor of the
artifact is therefore carried as a sum of scaled NIR node outputs plus a constant,

    tensor = sum_i scale_i * out(node_i) + constant       (scales per channel or per feature)

and the scales are folded where they meet a weight or a neuron:

- a Conv or Gemm/MatMul takes its input's scale into its weights' input columns (and the
  constant into its bias), so its output carries scale 1;
- a neuron takes the common scale s of its input current into its threshold: an IF with
  threshold theta on current s * u fires exactly when one with threshold theta / s on u does
  (reset by subtraction keeps that ratio), so NIR's ``v_threshold`` = theta / s and ``r`` = 1;
  inputs with other scales are brought to s first, by scaling the rows of the Conv/Affine that
  makes them (when nothing else reads it) or through a per-channel 1x1 Conv / diagonal Affine;
- average pools become ``SumPool2d`` with 1 / (kernel area) in the scale (sinabs reads no
  ``AvgPool2d``), Flatten ``Flatten`` over the sample's dimensions (NIR's shapes leave the
  batch out), Add/Sub several edges into one node (NIR sums them), Concat along channels one
  1x1 Conv per input that places its channels, Mul/Div by constants a scale.

What NIR cannot express is refused, naming every node: spiking max-pools, Poisson encoding,
leaky neurons, any other operator; nonzero initial membranes too (NIR's neurons start at
zero), unless ``initial_membrane="drop"`` starts them at zero anyway (a stated deviation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from ..artifact import SNNModel
from ..errors import ConfigError, ConversionError
from ..graph import constant_value, is_constant
from ..neurons import MULTI_SPIKE_IF
from ..version import __version__

INITIAL_MEMBRANES = ("refuse", "drop")
PASS_THROUGH = {"Identity", "Dropout"}


def _nir():
    try:
        import nir
    except ImportError as e:
        raise ConfigError("NIR needs the 'nir' package: pip install 'onnx2snn[nir]'") from e
    return nir


@dataclass
class Term:
    source: str  # a NIR node
    scale: np.ndarray  # broadcastable to the sample's shape


@dataclass
class Value:
    """An artifact tensor as NIR carries it: sum of scaled node outputs plus a constant."""

    terms: list[Term]
    const: np.ndarray
    shape: tuple[int, ...]  # one sample's


@dataclass
class NIRExport:
    """The graph, what became of every node, and what each consumer needs to simulate it."""

    graph: Any  # nir.NIRGraph
    nodes: list[dict] = field(default_factory=list)  # {"node", "op", "nir"}
    deviations: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "deviations": self.deviations, "targets": self.targets, **self.metadata}


def _per_sample(array: np.ndarray, rank: int) -> np.ndarray:
    """A constant broadcastable to [N, *sample]: its batch axis dropped."""
    array = np.asarray(array, np.float32)
    while array.ndim > rank:
        if array.shape[0] != 1:
            raise ValueError("varies over the batch")
        array = array[0]
    return array


def _is_zero(array: np.ndarray) -> bool:
    return not np.any(np.asarray(array))


def _channel_vector(scale: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``scale`` as one value per channel (axis 0 of the sample), or None if it varies within one."""
    full = np.broadcast_to(np.asarray(scale, np.float32), shape)
    if len(shape) == 1:
        return full.copy()
    flat = full.reshape(shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        return None
    return flat[:, 0].copy()


class _Exporter:
    def __init__(self, snn: SNNModel, initial_membrane: str, relay: bool = True):
        self.nir = _nir()
        self.relay = relay
        self.snn = snn
        self.initial_membrane = initial_membrane
        self.graph = gs.import_onnx(snn.proto)
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[str, Value] = {}
        self.rescalable: set[str] = set()  # weighted NIR nodes nothing else reads: their rows may change
        self.problems: list[ConversionError] = []
        self.record: list[dict] = []
        self.deviations: list[str] = []
        self.layers = {layer["node"]: layer for layer in snn.layers}
        self.state_inputs = {state.input for state in snn.states()}
        self.consumers: dict[str, int] = {}
        for node in self.graph.nodes:
            for t in node.inputs:
                self.consumers[t.name] = self.consumers.get(t.name, 0) + 1
        for t in self.graph.outputs:
            self.consumers[t.name] = self.consumers.get(t.name, 0) + 1

    # --- naming and bookkeeping -------------------------------------------------------
    def name(self, hint: str) -> str:
        base = re.sub(r"[^0-9A-Za-z_]+", "_", hint).strip("_") or "node"
        if base[0].isdigit() or base in ("input", "output"):
            base = f"layer_{base}"
        name, k = base, 1
        while name in self.nodes:
            k += 1
            name = f"{base}_{k}"
        return name

    def add(self, hint: str, nir_node: Any, sources: list[str]) -> str:
        name = self.name(hint)
        self.nodes[name] = nir_node
        self.edges.extend((s, name) for s in sources)
        return name

    def refuse(self, node: gs.Node, why: str) -> None:
        self.problems.append(ConversionError(why, node.name, node.op))

    # --- the linear algebra of scales -------------------------------------------------
    def weighted(self, hint: str, weight: np.ndarray, bias: np.ndarray, sources: list[str], **conv) -> str:
        """A Conv (``conv`` given: its ``input_shape``, ``stride``, ...) or Affine node."""
        nir = self.nir
        weight, bias = weight.astype(np.float32), bias.astype(np.float32)
        if conv:
            cls = nir.Conv1d if weight.ndim == 3 else nir.Conv2d
            nir_node = cls(input_shape=conv.pop("input_shape"), weight=weight, bias=bias, **conv)
        else:
            nir_node = nir.Affine(weight=weight, bias=bias)
        return self.add(hint, nir_node, sources)

    def rescale_rows(self, name: str, factor: np.ndarray) -> None:
        """Multiply a weighted node's output channels (rows) and bias by ``factor``."""
        node = self.nodes[name]
        factor = np.asarray(factor, np.float32).reshape(-1)
        shape = (-1,) + (1,) * (node.weight.ndim - 1)
        node.weight = (node.weight * factor.reshape(shape)).astype(np.float32)
        node.bias = (node.bias * factor).astype(np.float32)

    def add_bias(self, name: str, offset: np.ndarray) -> None:
        node = self.nodes[name]
        node.bias = (node.bias + np.asarray(offset, np.float32).reshape(-1)).astype(np.float32)

    def diagonal(self, hint: str, term: Term, shape: tuple[int, ...], factor: np.ndarray) -> str:
        """A node computing ``factor * out(term.source)`` per channel: a depthwise 1x1 Conv, or a
        diagonal Affine on flat features."""
        vector = _channel_vector(factor, shape)
        if len(shape) == 1:
            return self.weighted(hint, np.diag(vector), np.zeros(shape[0]), [term.source])
        channels, spatial = shape[0], len(shape) - 1
        weight = vector.reshape((channels, 1) + (1,) * spatial)
        one = 1 if spatial == 1 else (1, 1)
        return self.weighted(
            hint,
            weight,
            np.zeros(channels),
            [term.source],
            input_shape=shape[1] if spatial == 1 else tuple(shape[1:]),
            stride=one,
            padding=0 if spatial == 1 else (0, 0),
            dilation=one,
            groups=channels,
        )

    def unify(self, value: Value, hint: str) -> tuple[list[str], np.ndarray]:
        """Bring every term of ``value`` to one positive per-channel scale s and fold the
        constant into a bias; returns the sources to sum and s (for the reader to absorb)."""
        shape = value.shape
        fixed = [t for t in value.terms if t.source not in self.rescalable]
        target = np.ones(()) if not fixed else np.asarray(fixed[0].scale, np.float32)
        if _channel_vector(target, shape) is None or np.any(np.broadcast_to(target, shape) <= 0):
            target = np.ones(())  # negative or spatially varying: every term to scale 1
        sources = self.at_scale(value, target, hint)
        if not _is_zero(value.const):
            offset = np.broadcast_to(value.const / target, shape)
            vector = _channel_vector(offset, shape)
            owner = next((s for s in sources if s in self.rescalable), None)
            if vector is None:
                raise ValueError("a constant that varies within a channel")
            if owner is None:  # a node to carry the bias
                owner = self.diagonal(f"{hint}_bias", Term(sources[0], np.ones(())), shape, np.ones(()))
                sources[0] = owner
            self.add_bias(owner, vector)
        return sources, target

    # --- operators --------------------------------------------------------------------
    def value(self, tensor: gs.Tensor) -> Value:
        return self.values[tensor.name]

    def data_inputs(self, node: gs.Node) -> list[gs.Tensor]:
        return [t for t in node.inputs if not is_constant(t) and t.name and t.name not in self.state_inputs]

    def output_shape(self, node: gs.Node) -> tuple[int, ...]:
        shape = node.outputs[0].shape
        if shape is None or any(not isinstance(d, int) for d in shape[1:]):
            raise ValueError("its output shape is unknown")
        return tuple(int(d) for d in shape[1:])

    def conv(self, node: gs.Node) -> None:
        x = self.value(node.inputs[0])
        weight = np.asarray(constant_value(node.inputs[1]), np.float32)
        bias = np.asarray(constant_value(node.inputs[2]), np.float32) if len(node.inputs) > 2 else None
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
        spatial = weight.ndim - 2
        if spatial not in (1, 2):
            raise ValueError(f"{spatial}-D convolutions have no NIR node")
        attrs = node.attrs
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise ValueError(f"auto_pad {attrs['auto_pad']} has no NIR form")
        pads = list(attrs.get("pads", [0] * 2 * spatial))
        if pads[:spatial] != pads[spatial:]:
            raise ValueError(f"asymmetric padding {pads}")
        groups = int(attrs.get("group", 1))
        channels_in = x.shape[0]
        scale = _channel_vector(np.broadcast_to(np.ones(()), x.shape) * self.common_scale(x), x.shape)
        if scale is None:
            raise ValueError("its input's scale varies within a channel")
        per_group = channels_in // groups
        group_of_row = np.arange(weight.shape[0]) // (weight.shape[0] // groups)
        columns = scale.reshape(groups, per_group)[group_of_row]  # [out, in/groups]
        weight = weight * columns.reshape(columns.shape + (1,) * spatial)
        if not _is_zero(x.const):
            raise ValueError("a constant input current with padding or borders has no NIR form")
        sources = self.sources_at_one_scale(x)
        one = lambda v: v if spatial == 2 else v[0]  # noqa: E731
        name = self.weighted(
            node.name,
            weight,
            bias,
            sources,
            input_shape=tuple(x.shape[1:]) if spatial == 2 else x.shape[1],
            stride=one(tuple(attrs.get("strides", [1] * spatial))),
            padding=one(tuple(pads[:spatial])),
            dilation=one(tuple(attrs.get("dilations", [1] * spatial))),
            groups=groups,
        )
        self.produced(node, name)

    def common_scale(self, value: Value) -> np.ndarray:
        """The scale every term of ``value`` shares (terms with others are brought to it)."""
        return np.asarray(value.terms[0].scale, np.float32)

    def sources_at_one_scale(self, value: Value) -> list[str]:
        """Sources whose sum, times the first term's scale, is the value (constant aside)."""
        return self.at_scale(value, self.common_scale(value), value.terms[0].source)

    def at_scale(self, value: Value, target: np.ndarray, hint: str) -> list[str]:
        """Sources whose sum, times ``target``, is the value (constant aside): each term's node
        rescaled by row where nothing else reads it, else followed by a per-channel scale node."""
        sources = []
        for term in value.terms:
            ratio = np.asarray(term.scale, np.float32) / target
            if np.all(ratio == 1):
                sources.append(term.source)
            elif term.source in self.rescalable and _channel_vector(ratio, value.shape) is not None:
                self.rescale_rows(term.source, _channel_vector(ratio, value.shape))
                sources.append(term.source)
            else:
                sources.append(self.diagonal(f"{hint}_scale", term, value.shape, ratio))
                self.rescalable.add(sources[-1])
        return sources

    def produced(self, node: gs.Node, name: str) -> None:
        """``node``'s output is ``out(name)`` at scale 1."""
        shape = self.output_shape(node)
        if self.consumers.get(node.outputs[0].name, 0) == 1 and node.outputs[0] not in self.graph.outputs:
            self.rescalable.add(name)
        self.values[node.outputs[0].name] = Value([Term(name, np.ones(()))], np.zeros(()), shape)
        self.record.append({"node": node.name, "op": node.op, "nir": f"{type(self.nodes[name]).__name__} {name}"})

    def affine(self, node: gs.Node) -> None:
        x = self.value(self.data_inputs(node)[0])
        if len(x.shape) != 1:
            raise ValueError("a dense layer on a tensor that is not flat")
        if node.op == "MatMul":
            weight = np.asarray(constant_value(node.inputs[1]), np.float32).T
            bias = np.zeros(weight.shape[0], np.float32)
        else:
            a = node.attrs
            if a.get("transA", 0):
                raise ValueError("transA=1")
            b = np.asarray(constant_value(node.inputs[1]), np.float32)
            weight = float(a.get("alpha", 1.0)) * (b if a.get("transB", 0) else b.T)
            bias = np.zeros(weight.shape[0], np.float32)
            if len(node.inputs) > 2 and node.inputs[2].name:
                bias = float(a.get("beta", 1.0)) * np.broadcast_to(
                    np.asarray(constant_value(node.inputs[2]), np.float32).reshape(-1), (weight.shape[0],)
                )
        scale = np.broadcast_to(self.common_scale(x), x.shape)
        bias = bias + weight @ np.broadcast_to(x.const, x.shape)
        weight = weight * scale[None, :]
        self.produced(node, self.weighted(node.name, weight, bias, self.sources_at_one_scale(x)))

    def pool(self, node: gs.Node) -> None:
        nir = self.nir
        x = self.value(node.inputs[0])
        if len(x.shape) != 3:
            raise ValueError("only 2-D average pools have a NIR node")
        if node.op == "GlobalAveragePool":
            kernel, stride, pads = list(x.shape[1:]), list(x.shape[1:]), [0, 0, 0, 0]
        else:
            a = node.attrs
            kernel = list(a["kernel_shape"])
            stride = list(a.get("strides", [1, 1]))
            pads = list(a.get("pads", [0, 0, 0, 0]))
            if a.get("ceil_mode", 0):
                raise ValueError("ceil_mode=1")
        if any(pads):
            raise ValueError(f"padding {pads} (sinabs' SumPool2d reads none)")
        shape = self.output_shape(node)
        # one pool for every term (it sums the edges entering it), each term brought to one scale
        scale = self.common_scale(x)
        pooled = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array([0, 0]))
        name = self.add(node.name, pooled, self.sources_at_one_scale(x))
        terms = [Term(name, scale / np.float32(np.prod(kernel)))]
        const = _channel_vector(x.const, x.shape)  # the mean of a per-channel constant is itself
        if const is None:
            raise ValueError("a constant that varies within a channel")
        self.values[node.outputs[0].name] = Value(terms, const.reshape(-1, 1, 1), shape)
        self.record.append({"node": node.name, "op": node.op, "nir": f"SumPool2d, 1/{int(np.prod(kernel))} folded"})

    def flatten(self, node: gs.Node) -> None:
        nir = self.nir
        x = self.value(self.data_inputs(node)[0])
        shape = self.output_shape(node)
        if len(shape) != 1 or shape[0] != int(np.prod(x.shape)):
            raise ValueError(f"a reshape to {list(shape)} other than flattening each sample")
        if node.op == "Flatten" and node.attrs.get("axis", 1) != 1:
            raise ValueError(f"axis {node.attrs['axis']} (only the sample is flattened)")
        scale = self.common_scale(x)
        flat = nir.Flatten(input_type={"input": np.array(x.shape)}, start_dim=0, end_dim=-1)
        name = self.add(node.name, flat, self.sources_at_one_scale(x))
        terms = [Term(name, scale if scale.ndim == 0 else np.broadcast_to(scale, x.shape).reshape(-1))]
        const = np.asarray(x.const, np.float32)
        const = const if const.ndim == 0 else np.broadcast_to(const, x.shape).reshape(-1)
        self.values[node.outputs[0].name] = Value(terms, const, shape)
        self.record.append({"node": node.name, "op": node.op, "nir": "Flatten (sample dimensions)"})

    def arithmetic(self, node: gs.Node) -> None:
        shape = self.output_shape(node)
        rank = len(shape)
        a, b = node.inputs[0], node.inputs[1]
        if node.op in ("Add", "Sub"):
            sign = -1.0 if node.op == "Sub" else 1.0
            if is_constant(b) or is_constant(a):
                x, c = (self.value(a), constant_value(b)) if is_constant(b) else (self.value(b), constant_value(a))
                c = _per_sample(c, rank)
                if is_constant(a) and node.op == "Sub":  # c - x
                    x = Value([Term(t.source, -np.asarray(t.scale)) for t in x.terms], -x.const, x.shape)
                    sign = 1.0
                value = Value(x.terms, x.const + sign * c, shape)
                what = "folded into the bias before it"
            else:
                x, y = self.value(a), self.value(b)
                terms = x.terms + [Term(t.source, sign * np.asarray(t.scale)) for t in y.terms]
                value = Value(terms, x.const + sign * y.const, shape)
                what = "edges summed by the node they enter"
        else:  # Mul / Div by a constant
            if not is_constant(b):
                raise ValueError("a product of two variable tensors")
            factor = _per_sample(constant_value(b), rank)
            if node.op == "Div":
                factor = 1.0 / factor
            x = self.value(a)
            value = Value([Term(t.source, np.asarray(t.scale) * factor) for t in x.terms], x.const * factor, shape)
            what = "a scale, folded into the weights or threshold after it"
        self.values[node.outputs[0].name] = value
        self.record.append({"node": node.name, "op": node.op, "nir": what})

    def concat(self, node: gs.Node) -> None:
        shape = self.output_shape(node)
        axis = int(node.attrs.get("axis", 1))
        if (axis + len(shape) + 1 if axis < 0 else axis) != 1:
            raise ValueError(f"axis {axis} (only channels are concatenated)")
        terms, consts, offset = [], [], 0
        for tensor in node.inputs:
            x = self.value(tensor)
            channels = x.shape[0]
            for term in x.terms:
                place = np.zeros((shape[0], channels), np.float32)
                place[offset : offset + channels] = np.diag(_channel_vector(term.scale, x.shape))
                spatial = len(shape) - 1
                if spatial == 0:
                    name = self.weighted(f"{node.name}_place", place, np.zeros(shape[0]), [term.source])
                else:
                    one = 1 if spatial == 1 else (1, 1)
                    name = self.weighted(
                        f"{node.name}_place",
                        place.reshape(place.shape + (1,) * spatial),
                        np.zeros(shape[0]),
                        [term.source],
                        input_shape=tuple(x.shape[1:]) if spatial == 2 else x.shape[1],
                        stride=one,
                        padding=0 if spatial == 1 else (0, 0),
                        dilation=one,
                        groups=1,
                    )
                self.rescalable.add(name)
                terms.append(Term(name, np.ones(())))
            vector = _channel_vector(x.const, x.shape)
            if vector is None:
                raise ValueError("a constant that varies within a channel")
            consts.append(vector)
            offset += channels
        const = np.concatenate(consts).reshape((-1,) + (1,) * (len(shape) - 1))
        self.values[node.outputs[0].name] = Value(terms, const, shape)
        self.record.append({"node": node.name, "op": node.op, "nir": "one 1x1 Conv per input placing its channels"})

    def neuron(self, node: gs.Node, layer: dict) -> None:
        nir = self.nir
        x = self.value(node.inputs[0])
        shape = self.output_shape(node)
        sources, scale = self.unify(x, node.name)
        theta = np.asarray(self.snn.initializer(layer["threshold"]), np.float32)
        start = self.snn.initial_membrane(layer)
        if not _is_zero(start):
            if self.initial_membrane == "refuse":
                self.refuse(
                    node,
                    "starts its membranes above zero, which NIR cannot say (convert with --v-init 0 "
                    "and no potential correction, or export with initial_membrane='drop')",
                )
            else:
                self.deviations.append(f"{node.name}: initial membrane dropped (NIR's neurons start at 0)")
        full = lambda a: np.broadcast_to(np.asarray(a, np.float32), shape).astype(np.float32)  # noqa: E731
        if_node = nir.IF(r=full(1.0), v_threshold=full(theta / scale))
        name = self.add(node.name, if_node, sources)
        self.values[node.outputs[0].name] = Value([Term(name, theta)], np.zeros(()), shape)
        kind = "multi-spike" if node.op == MULTI_SPIKE_IF else "single-spike"
        what = f"IF {name} ({kind}), v_threshold = theta / scale"
        self.record.append({"node": node.name, "op": node.op, "nir": what})

    def output(self, tensor: gs.Tensor, index: int) -> None:
        x = self.values[tensor.name]
        sources, scale = self.unify(x, f"{tensor.name}_out")
        if not np.all(scale == 1):  # a last scale: give it a node
            sources = [self.diagonal(f"{tensor.name}_scale", Term(s, np.ones(())), x.shape, scale) for s in sources]
        name = "output" if index == 0 else f"output_{index}"
        self.nodes[name] = self.nir.Output(output_type={"output": np.array(x.shape)})
        self.edges.extend((s, name) for s in sources)

    def run(self) -> Any:
        nir = self.nir
        snn = self.snn
        if len(snn.inputs) != 1:
            names = ", ".join(snn.input_names)
            raise ConversionError(f"a NIR graph takes one input; this artifact has {len(snn.inputs)} ({names})")
        encoding = snn.inputs[0].get("encoding", snn.encoding)
        if encoding != "direct":
            raise ConversionError(
                f"{encoding} encoding draws its spikes in the runtime; NIR graphs take the input as it "
                "is (convert with --encoding direct)"
            )
        if snn.head:
            self.deviations.append(
                f"the trailing head ({', '.join(snn.head['outputs'])}) is applied after decoding: NIR has no such "
                f"step, and the graph's outputs are what it reads ({', '.join(snn.outputs)})"
            )
        starts = {layer["membrane_init"] for layer in snn.layers if layer.get("membrane_init")}
        shape = tuple(int(d) for d in snn.input_shape[1:])
        self.nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
        self.values[snn.input_name] = Value([Term("input", np.ones(()))], np.zeros(()), shape)
        pool_nodes = {p[k] for p in snn.pools for k in ("node", "accumulate", "difference")}
        for node in self.graph.toposort().nodes:
            if any(t.name in starts for t in node.outputs):
                continue  # an initial membrane, a constant output: read with its neuron
            if node.name in pool_nodes:
                if any(node.name == p["node"] for p in snn.pools):
                    self.refuse(node, "a spiking max-pool has no NIR node (pool with AveragePool instead)")
                continue
            if any(t.name not in self.values for t in self.data_inputs(node)):
                continue  # behind a refused node
            try:
                self.visit(node)
            except ValueError as e:
                self.refuse(node, f"no NIR form: {e}")
        if self.problems:
            error = ConversionError(
                "the artifact cannot be written as NIR: " + "; ".join(str(p) for p in self.problems)
            )
            error.problems = self.problems
            raise error
        for index, name in enumerate(snn.outputs):
            self.output(self.graph.tensors()[name], index)
        self.edges = _ordered(self.edges)
        if self.relay:
            for name in relay_shortcuts(self.nodes, self.edges, self.snn.metadata.get("reset", "subtract")):
                self.deviations.append(
                    f"{name}: the shortcut Conv runs inside its block (relay neurons of threshold 1 carry its "
                    "input), so that depth-first executors (nirtorch's) read it in the same step"
                )
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=self.metadata())

    def visit(self, node: gs.Node) -> None:
        if node.name in self.layers:
            if node.op not in ("IF", MULTI_SPIKE_IF):
                raise ValueError(f"{node.op} neurons are not written to NIR yet")
            self.neuron(node, self.layers[node.name])
        elif node.op == "Conv":
            self.conv(node)
        elif node.op in ("Gemm", "MatMul"):
            self.affine(node)
        elif node.op in ("AveragePool", "GlobalAveragePool"):
            self.pool(node)
        elif node.op in ("Flatten", "Reshape"):
            self.flatten(node)
        elif node.op in ("Add", "Sub", "Mul", "Div"):
            self.arithmetic(node)
        elif node.op == "Concat":
            self.concat(node)
        elif node.op in PASS_THROUGH:
            self.values[node.outputs[0].name] = self.value(self.data_inputs(node)[0])
        else:
            raise ValueError(f"NIR has no {node.op}")

    def metadata(self) -> dict[str, str]:
        layers = self.snn.layers
        multi = any(self.node_op(layer["node"]) == MULTI_SPIKE_IF for layer in layers)
        return {
            "producer": "onnx2snn",
            "producer_version": __version__,
            "spike_mode": "multi" if multi else "single",
            "reset": self.snn.metadata.get("reset", "subtract"),
            "firing": "v >= v_threshold",
            "dt": "1",
        }

    def node_op(self, name: str) -> str:
        return next((n.op for n in self.graph.nodes if n.name == name), "")


def _ordered(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Edges without repeats, in the order they were made (sources before their readers)."""
    return list(dict.fromkeys(edges))


def _center_tap(conv: Any) -> tuple[int, int] | None:
    """The kernel position whose input pixel lines up with a 1x1 conv of the same stride:
    an odd kernel padded by half its size, no dilation, no groups."""
    kernel = conv.weight.shape[2:]
    if conv.groups != 1 or any(k % 2 == 0 for k in kernel) or tuple(conv.dilation) != (1, 1):
        return None
    if tuple(conv.padding) != tuple((k - 1) // 2 for k in kernel):
        return None
    return tuple((k - 1) // 2 for k in kernel)


def relay_shortcuts(nodes: dict[str, Any], edges: list[tuple[str, str]], reset: str = "subtract") -> list[str]:
    """Route every Conv shortcut of a residual block through the block's own layers.

    A block ``X -> A (Conv) -> N (IF) -> B (Conv) -> J`` with a shortcut ``X -> S (1x1 Conv) -> J``
    has two paths from X to J. Executors that order nodes depth-first (nirtorch's, which
    sinabs and Norse use) then run J before one of them and read it a step late. Rewritten:
    A also copies X's spikes onto extra channels (a 1 at its center tap), N passes them on
    unchanged (relay neurons: a unit spike in, the same spike out, membrane back to 0; their
    threshold is 1 under reset by subtraction, where a spike must take all of the unit away, and
    0.5 under reset to zero, which fires whether the rule is v > or v >= the threshold), and B
    applies S's weights to them at its center tap. One path, the same sums. Needs X an IF (unit
    spikes), S 1x1 with A's stride, A and B odd kernels padded by half. Returns the shortcuts
    rerouted."""
    import nir

    def readers(name):
        return [b for a, b in edges if a == name]

    def writers(name):
        return [a for a, b in edges if b == name]

    rerouted = []
    for s_name in list(nodes):
        s = nodes.get(s_name)
        if not isinstance(s, nir.Conv2d) or s.weight.shape[2:] != (1, 1) or s.groups != 1:
            continue
        if tuple(s.padding) != (0, 0) or len(writers(s_name)) != 1 or len(readers(s_name)) != 1:
            continue
        x_name, j_name = writers(s_name)[0], readers(s_name)[0]
        if not isinstance(nodes[x_name], nir.IF):
            continue
        chain = None
        for a_name in readers(x_name):
            a = nodes[a_name]
            if a_name == s_name or not isinstance(a, nir.Conv2d) or writers(a_name) != [x_name]:
                continue
            if len(readers(a_name)) != 1 or not isinstance(nodes[readers(a_name)[0]], nir.IF):
                continue
            n_name = readers(a_name)[0]
            if writers(n_name) != [a_name] or len(readers(n_name)) != 1:
                continue
            b_name = readers(n_name)[0]
            b = nodes[b_name]
            if not isinstance(b, nir.Conv2d) or writers(b_name) != [n_name] or readers(b_name) != [j_name]:
                continue
            if tuple(a.stride) != tuple(s.stride) or tuple(b.stride) != (1, 1):
                continue
            if _center_tap(a) is None or _center_tap(b) is None:
                continue
            chain = a_name, n_name, b_name
        if chain is None:
            continue
        a_name, n_name, b_name = chain
        a, n, b = nodes[a_name], nodes[n_name], nodes[b_name]
        channels = s.weight.shape[1]
        ca, cb = _center_tap(a), _center_tap(b)
        copy = np.zeros((channels, channels) + a.weight.shape[2:], np.float32)
        copy[np.arange(channels), np.arange(channels), ca[0], ca[1]] = 1.0
        nodes[a_name] = nir.Conv2d(
            input_shape=a.input_shape,
            weight=np.concatenate([a.weight, copy]),
            bias=np.concatenate([a.bias, np.zeros(channels, np.float32)]),
            stride=a.stride,
            padding=a.padding,
            dilation=a.dilation,
            groups=1,
        )
        relay = np.ones((channels,) + n.v_threshold.shape[1:], np.float32)
        level = relay * (0.5 if reset == "zero" else 1.0)
        nodes[n_name] = nir.IF(r=np.concatenate([n.r, relay]), v_threshold=np.concatenate([n.v_threshold, level]))
        shortcut = np.zeros((b.weight.shape[0], channels) + b.weight.shape[2:], np.float32)
        shortcut[:, :, cb[0], cb[1]] = s.weight[:, :, 0, 0]
        nodes[b_name] = nir.Conv2d(
            input_shape=b.input_shape,
            weight=np.concatenate([b.weight, shortcut], axis=1),
            bias=(b.bias + s.bias).astype(np.float32),
            stride=b.stride,
            padding=b.padding,
            dilation=b.dilation,
            groups=1,
        )
        del nodes[s_name]
        edges[:] = [e for e in edges if s_name not in e]
        rerouted.append(s_name)
    return rerouted


TARGETS = {
    "sinabs": (
        "sinabs.from_nir(graph, batch_size=N) reads it: IAF neurons with subtractive reset; feed x repeated "
        "[N*T, ...] (batch and time flattened, sample first). It fires {sinabs_spikes} and clamps membranes "
        "at -v_threshold (min_v_mem); for this artifact's neurons set min_v_mem=None{sinabs_fix} on every "
        "IAFSqueeze layer"
    ),
    "norse": (
        "norse.torch.from_nir(graph) reads it, but its IAF resets to 0 (not by subtraction) and fires at "
        "v > v_threshold: equal to artifacts converted with --reset zero only; it reads Flatten's start_dim "
        "as torch's (batch first): add 1 to start_dim of every torch.nn.Flatten it builds; feed one step "
        "at a time, net(x, state)"
    ),
    "snntorch": (
        "snntorch.import_nir.import_from_nir cannot simulate it: it turns NIR's IF into a leaky neuron "
        "(beta 0.9), wants one v_threshold per layer and passes several input edges without summing them"
    ),
}


def to_nir(snn: SNNModel, initial_membrane: str = "refuse", relay_shortcuts: bool = True) -> NIRExport:
    """The NIR graph of ``snn`` (see the module docstring), with a report of what became of every
    node, the deviations and what each consumer (sinabs, Norse, snnTorch) needs.
    ``initial_membrane``: ``refuse`` (default) or ``drop`` nonzero initial membranes.
    ``relay_shortcuts``: route residual blocks' Conv shortcuts through the block (see
    ``relay_shortcuts``), for executors that run nodes depth-first."""
    if initial_membrane not in INITIAL_MEMBRANES:
        raise ConfigError(f"initial_membrane must be one of {', '.join(INITIAL_MEMBRANES)}, got {initial_membrane!r}")
    exporter = _Exporter(snn, initial_membrane, relay_shortcuts)
    graph = exporter.run()
    meta = exporter.metadata()
    multi = meta["spike_mode"] == "multi"
    targets = {
        "sinabs": TARGETS["sinabs"].format(
            sinabs_spikes="several spikes a step (MultiSpike), as this artifact does"
            if multi
            else "several spikes a step (MultiSpike) where this artifact fires one",
            sinabs_fix="" if multi else " and spike_fn=sinabs.activation.SingleSpike",
        ),
        "norse": TARGETS["norse"],
        "snntorch": TARGETS["snntorch"],
    }
    deviations = list(exporter.deviations)
    if meta["reset"] == "zero":
        deviations.append(
            "reset to zero: NIR 1.0.4's IF (and sinabs) reset by subtraction; Norse's IAF resets to 0 as this "
            "artifact does"
        )
    deviations.append(
        "dt: one step of the artifact is one NIR time unit (dt = 1); every neuron's input current is summed "
        "once a step (r = 1)"
    )
    return NIRExport(graph, exporter.record, deviations, targets, meta)


# fields later nir versions add that nir 1.0.4 (sinabs' pin) refuses when it reads a file
NEWER_FIELDS = {"IF": ("v_reset",), "LIF": ("v_reset",), "CubaLIF": ("v_reset",)}


def _as_1_0_4(node: dict) -> dict:
    """A node's dictionary as nir 1.0.4 reads it: fields it does not know left out (the IF
    written here resets by subtraction, as 1.0.4's does; the metadata says so)."""
    node = {k: v for k, v in node.items() if k not in NEWER_FIELDS.get(node.get("type"), ())}
    if isinstance(node.get("nodes"), dict):
        node["nodes"] = {k: _as_1_0_4(v) for k, v in node["nodes"].items()}
    return node


def save_nir(export: NIRExport, path) -> None:
    """Write the graph as a NIR (HDF5) file that nir 1.0.4 reads (whatever nir writes it),
    whole or not at all."""
    import io

    import h5py

    from ..files import write_atomic

    nir = _nir()

    def write(group, node: dict) -> None:  # as nir.write does
        for key, value in node.items():
            if key == "metadata":
                if value:
                    write(group.create_group(key), value)
            elif isinstance(value, str):
                group.create_dataset(key, data=value, dtype=h5py.string_dtype())
            elif isinstance(value, np.ndarray):
                group.create_dataset(key, data=value, dtype=value.dtype)
            elif isinstance(value, dict):
                write(group.create_group(str(key)), value)
            else:
                group.create_dataset(key, data=value)

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("version", data=getattr(nir, "version", "1.0.4"))
        write(f.create_group("node"), _as_1_0_4(export.graph.to_dict()))
    write_atomic(path, buffer.getvalue())
