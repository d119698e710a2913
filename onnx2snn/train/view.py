"""The trainable view of an ONNX graph: a small interpreter that runs the graph's nodes in
topological order with the torch operators of ops.py, its weights, biases (and, for an SNN,
thresholds and corrections) as ``torch.nn.Parameter``s, everything else as buffers.

- ``forward(x)`` equals onnxruntime on the same weights (to float rounding: tested on every
  reference model and architecture);
- ``to_onnx()`` writes the trained values back into a copy of the model, each initializer under
  its own name, bit for bit; quantized weights go back as integers behind ``DequantizeLinear``
  (quantize.py), and a weight that was stored as integers keeps that form.

onnx2torch was the other candidate: version 1.5 imports torchvision at import time, whose only
build here needs CUDA and does not load beside the CPU torch; and the IF neuron, the trainable
thresholds and the integer write-back would have needed their own code on top anyway."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from onnx import helper, numpy_helper

from ..errors import ConversionError
from ..graph import default_opset
from .ops import OPS, broadcast_scale
from .quantize import INT4_OPSET, QuantSpec, fake_quantize, integers, output_axis, stored_bits

WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1}  # op -> input index of its weight
INTEGER_TYPES = {
    onnx.TensorProto.INT8: 8,
    onnx.TensorProto.UINT8: 8,
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.INT16: 16,
    onnx.TensorProto.UINT16: 16,
}

Handler = Callable[[gs.Node, Sequence[torch.Tensor | None]], list[torch.Tensor]]


@dataclass
class IntegerWeight:
    """A weight stored as ``DequantizeLinear(q, scale[, zero_point])`` in the model."""

    node: str  # the DequantizeLinear node
    quantized: str  # its integer initializer
    scale: str
    zero_point: str | None
    axis: int | None  # of a per-axis scale; None for one scale
    blocked: bool  # block_size > 0 (opset 21): kept as it is, not trained
    storage_bits: int


def weight_slots(graph: gs.Graph) -> dict[str, tuple[gs.Node, int]]:
    """Tensor name -> (the layer, the rank of the weight) for every weight and bias a layer reads
    from a constant (or from a DequantizeLinear of a constant)."""
    slots: dict[str, tuple[gs.Node, int]] = {}
    for node in graph.nodes:
        if node.op in WEIGHTED:
            indices = [1, 2]
        elif node.op == "MatMul":
            indices = [i for i in (1, 0) if _is_weight(node.inputs[i])][:1]
        else:
            continue
        for i in indices:
            if i < len(node.inputs) and _is_weight(node.inputs[i]):
                slots.setdefault(node.inputs[i].name, (node, i))
    return slots


def _is_weight(t: gs.Tensor) -> bool:
    if isinstance(t, gs.Constant):
        return np.issubdtype(np.dtype(t.dtype), np.floating) if t.dtype is not None else True
    producer = t.inputs[0] if t.inputs else None
    return producer is not None and producer.op == "DequantizeLinear" and isinstance(producer.inputs[0], gs.Constant)


class GraphModule(torch.nn.Module):
    """``model`` (a canonical ANN or an SNN artifact's step graph) as a torch module.

    ``trainable``: names of float initializers that become parameters (the weights and biases
    of every Conv, ConvTranspose, Gemm and constant MatMul operand by default, see
    ``weight_names``); ``quantize``: weight name -> QuantSpec, quantized with the straight-through
    estimator in every forward pass (a weight stored as integers keeps its own bits and axis
    unless named here); ``handlers``: op type -> function for ops outside ops.py (the SNN's IF)."""

    def __init__(
        self,
        model: onnx.ModelProto,
        trainable: Iterable[str] | None = None,
        quantize: dict[str, QuantSpec] | None = None,
        handlers: dict[str, Handler] | None = None,
    ):
        super().__init__()
        self.proto = model
        self.graph = gs.import_onnx(model)
        self.graph.toposort(mode="nodes")
        self.nodes: list[gs.Node] = list(self.graph.nodes)
        self.handlers = dict(handlers or {})
        initializers = {t.name: t for t in model.graph.initializer}
        self.input_names = [t.name for t in model.graph.input if t.name not in initializers]
        self.output_names = [t.name for t in model.graph.output]
        self.slots = weight_slots(self.graph)
        self.integer: dict[str, IntegerWeight] = self._integer_weights(initializers)
        names = set(self.slots) if trainable is None else set(trainable)
        self.quantize: dict[str, QuantSpec] = {}
        for name, w in self.integer.items():
            if name in names and not w.blocked:
                bits = stored_bits(numpy_helper.to_array(initializers[w.quantized]).astype(np.int64), w.storage_bits)
                self.quantize[name] = QuantSpec(bits, w.axis)
        for name, spec in (quantize or {}).items():
            self.quantize[name] = spec
        self.skipped = {w.node for name, w in self.integer.items() if name in names and not w.blocked}

        self.params = torch.nn.ParameterList()
        self.param_index: dict[str, int] = {}
        self.buffer_attr: dict[str, str] = {}
        values = {name: numpy_helper.to_array(t) for name, t in initializers.items()}
        # tensors held by Constant nodes (an artifact's initial membranes): trainable like initializers
        self.constant_nodes = {
            n.output[0]: n.name
            for n in model.graph.node
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"
        }
        for n in model.graph.node:
            if n.output and n.output[0] in self.constant_nodes and n.output[0] in names:
                values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
                self.skipped.add(n.name)
        for name in sorted(names):
            if name in self.integer and not self.integer[name].blocked:
                array = self._dequantized(self.integer[name], values)
            elif name in values and np.issubdtype(values[name].dtype, np.floating):
                array = values[name]
            else:
                continue
            self.param_index[name] = len(self.params)
            self.params.append(torch.nn.Parameter(torch.from_numpy(np.array(array, np.float32, copy=True))))
        for i, (name, array) in enumerate(values.items()):
            if name in self.param_index:
                continue
            if array.dtype != np.int64 and array.dtype != bool and not np.issubdtype(array.dtype, np.floating):
                array = array.astype(np.int64)  # every integer type (INT4 included) as torch's int64
            attr = f"constant_{i}"
            self.register_buffer(attr, torch.from_numpy(np.array(array, copy=True)), persistent=False)
            self.buffer_attr[name] = attr
        unknown = sorted({n.op for n in self.nodes if n.op not in OPS and n.op not in self.handlers})
        if unknown:
            node = next(n for n in self.nodes if n.op in unknown)
            raise ConversionError(f"the torch view has no operator {node.op}", node.name, node.op)

    # --- reading the model ------------------------------------------------------------
    def _integer_weights(self, initializers: dict[str, onnx.TensorProto]) -> dict[str, IntegerWeight]:
        found = {}
        for node in self.graph.nodes:
            if node.op != "DequantizeLinear" or not isinstance(node.inputs[0], gs.Constant):
                continue
            out = node.outputs[0].name
            if out not in self.slots:
                continue
            q = initializers.get(node.inputs[0].name)
            scale = initializers.get(node.inputs[1].name)
            if q is None or scale is None:
                continue
            zero = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2].name else None
            per_axis = len(scale.dims) == 1
            found[out] = IntegerWeight(
                node=node.name,
                quantized=q.name,
                scale=scale.name,
                zero_point=zero,
                axis=int(node.attrs.get("axis", 1)) % max(len(q.dims), 1) if per_axis else None,
                blocked=bool(node.attrs.get("block_size", 0)),
                storage_bits=INTEGER_TYPES.get(q.data_type, 8),
            )
        return found

    @staticmethod
    def _dequantized(w: IntegerWeight, values: dict[str, np.ndarray]) -> np.ndarray:
        q = values[w.quantized].astype(np.float32)
        if w.zero_point:
            zero = values[w.zero_point].astype(np.float32)
            q = q - (zero.reshape([-1 if i == w.axis else 1 for i in range(q.ndim)]) if w.axis is not None else zero)
        scale = values[w.scale].astype(np.float32)
        shaped = scale.reshape([-1 if i == w.axis else 1 for i in range(q.ndim)]) if w.axis is not None else scale
        return (q * shaped).astype(np.float32)

    def parameter(self, name: str) -> torch.nn.Parameter:
        return self.params[self.param_index[name]]

    def constant(self, name: str) -> torch.Tensor:
        """The value a constant tensor has in the forward pass (a parameter quantized as trained)."""
        if name in self.param_index:
            p = self.parameter(name)
            return fake_quantize(p, self.quantize[name]) if name in self.quantize else p
        return getattr(self, self.buffer_attr[name])

    # --- running it -------------------------------------------------------------------
    def run(self, values: dict[str, torch.Tensor], nodes: Sequence[gs.Node] | None = None) -> dict[str, torch.Tensor]:
        """Evaluate ``nodes`` (all, in order, by default) with ``values`` holding the graph inputs
        and anything computed before; returns ``values`` with every output added."""
        for node in self.nodes if nodes is None else nodes:
            if node.name in self.skipped:
                values[node.outputs[0].name] = self.constant(node.outputs[0].name)
                continue
            inputs = [self._value(t, values) for t in node.inputs]
            handler = self.handlers.get(node.op) or OPS[node.op]
            try:
                outputs = handler(node, inputs)
            except ConversionError:
                raise
            except Exception as e:
                raise ConversionError(f"the torch view failed here: {type(e).__name__}: {e}", node.name, node.op) from e
            for t, v in zip(node.outputs, outputs):
                if t.name:
                    values[t.name] = v
        return values

    def _value(self, t: gs.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not t.name:
            return None
        if t.name in values:
            return values[t.name]
        if t.name in self.param_index or t.name in self.buffer_attr:
            value = self.constant(t.name)
            values[t.name] = value
            return value
        raise ConversionError(f"tensor '{t.name}' has no value (is it a graph input that was not fed?)")

    def forward(self, *inputs: torch.Tensor, outputs: Sequence[str] | None = None):
        """The graph's first output for its inputs in order; ``outputs`` names the tensors
        wanted instead (returned as a list)."""
        values = self.run(dict(zip(self.input_names, inputs)))
        if outputs is None:
            return values[self.output_names[0]]
        return [values[name] for name in outputs]

    # --- writing it back --------------------------------------------------------------
    def to_onnx(self, int4: bool | None = None) -> onnx.ModelProto:
        """A copy of the model with every parameter's current value: float weights in place,
        quantized ones as integers behind DequantizeLinear. ``int4``: store weights of at most 4
        bits as INT4 (the model's opset is raised to 21 for it); None: where the opset already
        allows it."""
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        opset = default_opset(model)
        use_int4 = opset >= INT4_OPSET if int4 is None else int4
        if use_int4 and opset < INT4_OPSET and any(s.bits <= 4 for s in self.quantize.values()):
            model = _raise_opset(model, INT4_OPSET)
        inits = {t.name: t for t in model.graph.initializer}
        new_nodes = []
        for name, index in self.param_index.items():
            value = self.params[index].detach().cpu()
            if name not in self.quantize:
                tensor = numpy_helper.from_array(value.numpy().astype(np.float32), name)
                if name in inits:
                    inits[name].CopyFrom(tensor)
                else:  # held by a Constant node
                    node = next(n for n in model.graph.node if n.op_type == "Constant" and n.output[0] == name)
                    node.attribute[0].t.CopyFrom(tensor)
                continue
            spec = self.quantize[name]
            q, alpha = integers(value, spec)
            q = q.numpy().astype(np.int8)
            alpha = alpha.reshape(-1).numpy().astype(np.float32) if spec.axis is not None else alpha.reshape(())
            alpha = np.asarray(alpha, np.float32)
            data_type = onnx.TensorProto.INT4 if use_int4 and spec.bits <= 4 else onnx.TensorProto.INT8
            stored = integer_tensor(q, data_type)
            if name in self.integer:  # already integer: new values, same node
                w = self.integer[name]
                stored.name = w.quantized
                inits[w.quantized].CopyFrom(stored)
                inits[w.scale].CopyFrom(numpy_helper.from_array(alpha, w.scale))
                node = next(n for n in model.graph.node if n.name == w.node)
                del node.input[2:]
                _set_axis(node, spec.axis)
            else:  # a float weight becomes q and its scale
                stored.name = f"{name}.quantized"
                scale = numpy_helper.from_array(alpha, f"{name}.scale")
                model.graph.initializer.remove(inits[name])
                model.graph.initializer.extend([stored, scale])
                node = helper.make_node(
                    "DequantizeLinear", [stored.name, scale.name], [name], name=f"{name}.dequantize"
                )
                _set_axis(node, spec.axis)
                new_nodes.append(node)
                kept = [i for i in model.graph.input if i.name != name]
                del model.graph.input[:]
                model.graph.input.extend(kept)
        if new_nodes:
            rest = list(model.graph.node)
            del model.graph.node[:]
            model.graph.node.extend(new_nodes + rest)
        return model


def integer_tensor(q: np.ndarray, data_type: int) -> onnx.TensorProto:
    """An INT8 or INT4 initializer of the integers ``q`` (INT4 packs two to a byte)."""
    if data_type == onnx.TensorProto.INT8:
        return numpy_helper.from_array(q.astype(np.int8))
    return helper.make_tensor("", data_type, q.shape, q.reshape(-1).astype(np.int8).tolist())


def _set_axis(node: onnx.NodeProto, axis: int | None) -> None:
    kept = [a for a in node.attribute if a.name != "axis"]
    del node.attribute[:]
    node.attribute.extend(kept)
    if axis is not None:
        node.attribute.append(helper.make_attribute("axis", int(axis)))


def _raise_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` at default-domain ``opset`` (ONNX's version converter; model-local functions
    declare their own opset and are moved along)."""
    from onnx import version_converter

    functions = list(model.functions)
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.functions[:]
    try:
        upgraded = version_converter.convert_version(bare, opset)
    except Exception as e:
        raise ConversionError(f"the model could not be raised to opset {opset} for INT4 weights: {e}") from e
    upgraded.ir_version = model.ir_version
    for fn in functions:
        for imp in fn.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = opset
        upgraded.functions.append(fn)
    return upgraded


def weight_names(model: onnx.ModelProto) -> list[str]:
    """The weights and biases of the model's layers, in graph order."""
    return list(weight_slots(gs.import_onnx(model)))


def default_quantization(module_or_model: GraphModule | onnx.ModelProto, bits: int, channel_wise: bool) -> dict:
    """QuantSpec for every layer's weight (not its bias): per layer, or per output channel."""
    graph = module_or_model.graph if isinstance(module_or_model, GraphModule) else gs.import_onnx(module_or_model)
    specs = {}
    for name, (node, index) in weight_slots(graph).items():
        if index == 2:  # a bias
            continue
        t = node.inputs[index]
        rank = len(t.shape) if t.shape is not None else 2
        axis = output_axis(node.op, node.attrs, rank, index) if channel_wise else None
        specs[name] = QuantSpec(bits, axis)
    return specs


__all__ = ["GraphModule", "broadcast_scale", "default_quantization", "integer_tensor", "weight_names"]
