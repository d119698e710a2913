"""What a model file must be before anything works on it: checks that run when an ONNX model
is loaded (tensors whole, a graph without cycles or twice-produced tensors, an opset this onnx
knows) and when an SNN artifact is (its metadata names only what the graph holds). Each
failure is a ModelError naming the file and the tensor, node or metadata field."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from .errors import ModelError
from .limits import MAX_TIMESTEPS
from .neuron import DOMAIN, ENCODINGS, OP_TYPE, RESET_MODES, SPIKE_MODES
from .neurons import CUBA_LIF, SIGNATURES
from .neurons import OP_TYPES as OTHER_NEURONS

NEURON_OPS = (OP_TYPE, *OTHER_NEURONS)
# what a layer's ``op`` says it came from: the activation it replaced, or the NIR node it was read from
LAYER_SOURCES = ("Relu", "Clip", "IF", "LIF", "CubaLIF")

DECODED = ".decoded"  # a trailing head reads the decoded mean of graph output z as z + DECODED

# values a typed field holds per element, where it is not 1 (complex numbers: real, imaginary)
_PAIRS = {TensorProto.COMPLEX64, TensorProto.COMPLEX128}
_SUB_BYTE = {
    getattr(TensorProto, name)
    for name in ("UINT4", "INT4", "FLOAT4E2M1", "UINT2", "INT2", "FLOAT6E2M3", "FLOAT6E3M2")
    if hasattr(TensorProto, name)
}


def _all_tensors(model: onnx.ModelProto) -> Iterable[TensorProto]:
    from onnx import external_data_helper as ext

    yield from ext._get_all_tensors(model)


def check_tensor(tensor: TensorProto, where: str) -> None:
    """A ModelError unless ``tensor`` holds as many values as its dims say (external data must
    have been loaded)."""
    if any(d < 0 for d in tensor.dims):
        raise ModelError(f"{where}: tensor '{tensor.name}' has negative dims {list(tensor.dims)}")
    if tensor.data_type == TensorProto.UNDEFINED or tensor.data_type not in TensorProto.DataType.values():
        raise ModelError(f"{where}: tensor '{tensor.name}' has no known data type ({tensor.data_type})")
    if tensor.data_type in _SUB_BYTE:
        return
    count = int(np.prod(tensor.dims, dtype=np.float64)) if tensor.dims else 1
    if tensor.HasField("raw_data") or tensor.raw_data:
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, ValueError, TypeError):
            raise ModelError(f"{where}: tensor '{tensor.name}' has unknown data type {tensor.data_type}") from None
        found = len(tensor.raw_data)
        if tensor.data_type == TensorProto.STRING or found == count * itemsize:
            return
        raise ModelError(
            f"{where}: tensor '{tensor.name}' of shape {list(tensor.dims)} needs {count * itemsize:,} bytes of data, "
            f"it holds {found:,}"
        )
    fields = (
        tensor.float_data,
        tensor.int32_data,
        tensor.int64_data,
        tensor.double_data,
        tensor.uint64_data,
        tensor.string_data,
    )
    found = max(len(f) for f in fields)
    expected = count * (2 if tensor.data_type in _PAIRS else 1)
    if found != expected:
        raise ModelError(
            f"{where}: tensor '{tensor.name}' of shape {list(tensor.dims)} holds {found:,} values, its dims say "
            f"{expected:,}"
        )


def check_tensors(model: onnx.ModelProto, where: str) -> None:
    """Every initializer and constant of ``model`` (subgraphs too) whole."""
    for tensor in _all_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            check_tensor(tensor, where)


def check_opset(model: onnx.ModelProto, where: str) -> None:
    """The IR version and default-domain opset are ones this onnx knows."""
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(
            f"{where}: IR version {model.ir_version} is newer than the installed onnx {onnx.__version__} reads "
            f"(at most {onnx.IR_VERSION})"
        )
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not 1 <= imp.version <= newest:
            raise ModelError(
                f"{where}: opset {imp.version} is not one the installed onnx {onnx.__version__} knows (1 to {newest})"
            )


def check_text(message: Any, where: str) -> None:
    """Every string field of ``message`` (names, op types, domains, metadata), recursively, is
    valid UTF-8: protobuf hands back bytes where it is not, which no name can be."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if repeated else [value]
            if any(not isinstance(v, str) for v in values):
                raise ModelError(f"{where}: a {field.name} field is not valid UTF-8 text")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if repeated else [value]:
                check_text(item, where)


def check_nodes(model: onnx.ModelProto, where: str) -> None:
    """Every standard operator of the top graph has the inputs, outputs and attributes its
    schema allows (nodes holding subgraphs are left to the conversion's own check)."""
    context = onnx.checker.C.CheckerContext()
    context.ir_version = model.ir_version
    context.opset_imports = {imp.domain: imp.version for imp in model.opset_import}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or any(a.type in _SUBGRAPHS for a in node.attribute):
            continue
        try:
            onnx.checker.check_node(node, context)
        except onnx.checker.ValidationError as e:
            reason = next((line.strip() for line in str(e).splitlines() if line.strip()), "invalid")
            raise ModelError(f"{where}: node '{node.name}' ({node.op_type}): {reason}") from None


_SUBGRAPHS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def check_graph(graph: onnx.GraphProto, where: str) -> None:
    """Every tensor produced once, by a node or as an input/initializer, and no cycle."""
    for value in list(graph.input) + list(graph.output):
        kind = value.type.WhichOneof("value")
        if kind not in (None, "tensor_type"):
            kind = kind.replace("_type", "")
            raise ModelError(f"{where}: graph input/output '{value.name}' is a {kind}, not a tensor")
    producer: dict[str, str] = {}
    for value in list(graph.input) + list(graph.initializer):
        producer.setdefault(value.name, f"graph input '{value.name}'")
    for node in graph.node:
        for out in node.output:
            if not out:
                continue
            if out in producer:
                raise ModelError(
                    f"{where}: tensor '{out}' is produced twice: by node '{node.name}' ({node.op_type}) and "
                    f"by {producer[out]}"
                )
            producer[out] = f"node '{node.name}' ({node.op_type})"
    # Kahn's algorithm over the nodes: whatever cannot be ordered sits on a cycle
    made_by = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting = [sum(1 for t in set(node.input) if t in made_by) for node in graph.node]
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in set(node.input):
            if t in made_by:
                readers.setdefault(made_by[t], []).append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for j in readers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if done < len(graph.node):
        stuck = next(graph.node[i] for i, n in enumerate(waiting) if n > 0)
        raise ModelError(f"{where}: the graph has a cycle through node '{stuck.name}' ({stuck.op_type})")


# --- the artifact's metadata -------------------------------------------------------------
class _Fields:
    """Reads the metadata, raising a ModelError that names the field at fault."""

    def __init__(self, where: str, model: onnx.ModelProto):
        self.where = where
        graph = model.graph
        self.inputs = {v.name for v in graph.input}
        self.outputs = {v.name for v in graph.output}
        self.initializers = {t.name for t in graph.initializer}
        self.nodes = {n.name: n for n in graph.node}
        self.produced = {out for n in graph.node for out in n.output if out}
        self.tensors = self.initializers | self.produced  # every constant a metadata field may name

    def fail(self, field: str, why: str) -> ModelError:
        return ModelError(f"{self.where}: corrupt onnx2snn metadata: {field} {why}")

    def get(self, d: dict, key: str, field: str, types: type | tuple, optional: bool = False) -> Any:
        if key not in d or (optional and d[key] is None):
            if optional:
                return None
            raise self.fail(f"{field}.{key}" if field else key, "is missing")
        value = d[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(f"{field}.{key}" if field else key, f"must be {_kind(types)}, got {value!r}")
        if not isinstance(value, types):
            raise self.fail(f"{field}.{key}" if field else key, f"must be {_kind(types)}, got {_short(value)}")
        return value

    def name_in(self, d: dict, key: str, field: str, kind: str, names: Iterable[str], optional: bool = False) -> None:
        value = self.get(d, key, field, str, optional)
        if value is not None and value not in names:
            raise self.fail(f"{field}.{key}", f"names {kind} '{value}', which the graph lacks")


def _kind(types: type | tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}
    names[bool] = "true/false"
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_metadata(metadata: Any, model: onnx.ModelProto, where: str) -> None:
    """A ModelError unless ``metadata`` is an onnx2snn artifact's (see artifact.py; format 3,
    or an older one as ``_upgrade`` leaves it) and every node, state, tensor and initializer it
    names is in ``model``'s graph."""
    f = _Fields(where, model)
    if not isinstance(metadata, dict):
        raise f.fail("", f"must be a JSON object, got {_short(metadata)}")
    fmt = f.get(metadata, "format", "", int, optional=True)
    if fmt is not None and fmt < 0:
        raise f.fail("format", f"must be a positive integer, got {fmt}")
    inlined = f.get(metadata, "inlined", "", bool, optional=True)
    keys = (("encoding", ENCODINGS), ("reset", RESET_MODES), ("decode", ("mean",)), ("spike_mode", SPIKE_MODES))
    for key, allowed in keys:
        value = f.get(metadata, key, "", str, optional=True)
        if value is not None and value not in allowed:
            raise f.fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
    if "inputs" not in metadata and "input" in metadata:  # an older format's, not upgraded
        raise f.fail("input", f"must be an object with a name and a shape, got {_short(metadata['input'])}")
    data_inputs = f.get(metadata, "inputs", "", list)
    if not data_inputs:
        raise f.fail("inputs", "is empty")
    for i, data_input in enumerate(data_inputs):
        field = f"inputs[{i}]"
        if not isinstance(data_input, dict):
            raise f.fail(field, f"must be an object, got {_short(data_input)}")
        f.name_in(data_input, "name", field, "graph input", f.inputs)
        if any(other.get("name") == data_input["name"] for other in data_inputs[:i]):
            raise f.fail(f"{field}.name", f"repeats the input '{data_input['name']}'")
        shape = f.get(data_input, "shape", field, list)
        if any(d is not None and (not isinstance(d, int) or isinstance(d, bool) or d <= 0) for d in shape):
            raise f.fail(f"{field}.shape", f"must hold positive integers or null, got {_short(shape)}")
        encoding = f.get(data_input, "encoding", field, str, optional=True)
        if encoding is not None and encoding not in ENCODINGS:
            raise f.fail(f"{field}.encoding", f"must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if f.get(data_input, "sequence", field, bool, optional=True) and encoding not in (None, "direct"):
            raise f.fail(f"{field}.encoding", f"must be direct for a sequence input, got {encoding!r}")
    sequence = any(isinstance(i, dict) and i.get("sequence") for i in data_inputs)
    f.get(metadata, "batch", "", str, optional=True)
    outputs = f.get(metadata, "outputs", "", list)
    if not outputs:
        raise f.fail("outputs", "is empty")
    for i, name in enumerate(outputs):
        f.name_in({"name": name}, "name", f"outputs[{i}]", "graph output", f.outputs)

    layers = f.get(metadata, "layers", "", list)
    named = set()
    for i, layer in enumerate(layers):
        field = f"layers[{i}]"
        if not isinstance(layer, dict):
            raise f.fail(field, f"must be an object, got {_short(layer)}")
        if inlined:  # its IF node is standard operators now, named after it
            f.get(layer, "node", field, str)
        else:
            f.name_in(layer, "node", field, "node", f.nodes)
            node = f.nodes[layer["node"]]
            if node.domain != DOMAIN or node.op_type not in NEURON_OPS:
                kinds = "/".join(NEURON_OPS)
                what = f"names node '{node.name}' ({node.op_type}), not an {DOMAIN} neuron ({kinds})"
                raise f.fail(f"{field}.node", what)
            named.add(node.name)
        op = f.get(layer, "op", field, str)
        if op not in LAYER_SOURCES:
            raise f.fail(f"{field}.op", f"must be one of {', '.join(LAYER_SOURCES)}, got {op!r}")
        f.get(layer, "clip_max", field, (int, float), optional=True)
        f.name_in(layer, "membrane", field, "graph input", f.inputs)
        f.name_in(layer, "membrane_next", field, "graph output", f.outputs)
        f.name_in(layer, "threshold", field, "initializer", f.initializers)
        # a bias correction that a simplifier folded into the layer before it (onnxslim) leaves
        # neither its Add nor its constant: the artifact still runs (to_ann says what it lacks)
        shift = f.get(layer, "current_shift", field, str, optional=True)
        correction = f.get(layer, "current_correction", field, str, optional=True)
        folded = correction is not None and correction not in f.nodes and shift not in f.tensors
        if not folded:
            f.name_in(layer, "current_shift", field, "initializer", f.initializers, optional=True)
            f.name_in(layer, "current_correction", field, "node", f.nodes, optional=True)
        # a constant output (format 3), or an initializer (format 2, or as a simplifier folds it)
        f.name_in(layer, "membrane_init", field, "tensor", f.tensors, optional=True)
        # a CubaLIF's synaptic current: a state like the membrane
        f.name_in(layer, "current", field, "graph input", f.inputs, optional=True)
        f.name_in(layer, "current_next", field, "graph output", f.outputs, optional=layer.get("current") is None)
        if inlined:
            continue
        reads, writes = [layer["membrane"], layer["threshold"]], [layer["membrane_next"]]
        if node.op_type == CUBA_LIF:  # (x, membrane, current, threshold, ...) -> (spikes, membrane, current)
            f.name_in(layer, "current", field, "graph input", f.inputs)
            reads.insert(1, layer["current"])
            writes.append(layer["current_next"])
        arity = len(SIGNATURES[node.op_type][0]) if node.op_type in SIGNATURES else None  # IF: as it always was
        if (
            list(node.input[1 : 1 + len(reads)]) != reads
            or list(node.output[1 : 1 + len(writes)]) != writes
            or (arity is not None and len(node.input) != arity)
        ):
            raise f.fail(field, f"does not match the inputs and outputs of node '{node.name}'")
    unnamed = [
        n.name for n in model.graph.node if n.domain == DOMAIN and n.op_type in NEURON_OPS and n.name not in named
    ]
    if unnamed:
        raise f.fail("layers", f"does not list the neuron '{unnamed[0]}'")
    if not inlined:
        defined = {fn.name for fn in model.functions if fn.domain == DOMAIN}
        called = [f.nodes[layer["node"]].op_type for layer in layers]
        missing = next((op for op in called if op not in defined), None)
        if missing is not None:
            raise ModelError(f"{where}: the {DOMAIN}.{missing} function the neurons call is missing from the model")

    pools = f.get(metadata, "pools", "", list, optional=True) or []
    for i, pool in enumerate(pools):
        field = f"pools[{i}]"
        if not isinstance(pool, dict):
            raise f.fail(field, f"must be an object, got {_short(pool)}")
        for key in ("node", "accumulate", "difference"):
            f.name_in(pool, key, field, "node", f.nodes)
        for key in ("accumulated", "pooled"):
            f.name_in(pool, key, field, "graph input", f.inputs)
            f.name_in(pool, f"{key}_next", field, "graph output", f.outputs)
    # every graph input is a data input or a state (an initializer listed as an input aside)
    declared = {i["name"] for i in data_inputs} | {layer["membrane"] for layer in layers} | f.initializers
    declared |= {layer["current"] for layer in layers if layer.get("current")}
    declared |= {pool[key] for pool in pools for key in ("accumulated", "pooled")}
    unlisted = next((v.name for v in model.graph.input if v.name not in declared), None)
    if unlisted is not None:
        raise f.fail("inputs", f"does not list the graph input '{unlisted}', and no layer or pool has it as its state")

    _check_head(f, f.get(metadata, "head", "", dict, optional=True), outputs)
    timesteps = f.get(metadata, "timesteps", "", int)
    least = 0 if sequence else 1  # 0: as many steps as the sequence holds
    if not least <= timesteps <= MAX_TIMESTEPS:
        raise f.fail("timesteps", f"must lie in [{least}, {MAX_TIMESTEPS}], got {timesteps}")
    v_init = f.get(metadata, "v_init", "", (int, float), optional=True)
    if v_init is not None and not 0.0 <= v_init < 1.0:
        raise f.fail("v_init", f"must lie in [0, 1), got {v_init}")
    activations = f.get(metadata, "output_activations", "", dict, optional=True) or {}
    for name, act in activations.items():
        field = f"output_activations.{name}"
        if not isinstance(act, dict):
            raise f.fail(field, f"must be an object, got {_short(act)}")
        if f.get(act, "op", field, str) not in ("Softmax", "LogSoftmax"):
            raise f.fail(f"{field}.op", f"must be Softmax or LogSoftmax, got {act['op']!r}")
        f.get(act, "axis", field, int)
    calibration = f.get(metadata, "calibration", "", dict, optional=True)
    if calibration is not None:
        f.get(calibration, "method", "calibration", str)
        f.get(calibration, "per_channel", "calibration", bool)
        f.get(calibration, "samples", "calibration", int, optional=True)
        corrections = f.get(calibration, "corrections", "calibration", list, optional=True) or []
        if not all(isinstance(c, str) for c in corrections):
            raise f.fail("calibration.corrections", f"must be a list of strings, got {_short(corrections)}")
    _check_preprocessing(f, f.get(metadata, "preprocessing", "", dict, optional=True))
    report = f.get(metadata, "report", "", list, optional=True) or []
    for i, row in enumerate(report):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("node", "op", "fate", "detail")):
            raise f.fail(f"report[{i}]", "must be an object with strings node, op, fate and detail")
    f.get(metadata, "version", "", str, optional=True)
    source = f.get(metadata, "source", "", str, optional=True)
    if source is not None and source != "nir":
        raise f.fail("source", f"must be nir where present, got {source!r}")
    nir = f.get(metadata, "nir", "", dict, optional=True)
    if nir is not None:
        dt = f.get(nir, "dt", "nir", (int, float))
        if not dt > 0:
            raise f.fail("nir.dt", f"must be positive, got {dt}")
        f.get(nir, "version", "nir", str, optional=True)
        f.get(nir, "file", "nir", str, optional=True)


def _check_head(f: _Fields, head: dict | None, outputs: list[str]) -> None:
    """A trailing head (artifact.head_metadata): reads ``<z>.decoded`` of graph outputs z."""
    if head is None:
        return
    for key in ("inputs", "outputs", "ann_outputs"):
        names = f.get(head, key, "head", list)
        if not names or not all(isinstance(name, str) for name in names):
            raise f.fail(f"head.{key}", f"must be a list of names, got {_short(names)}")
    for i, name in enumerate(head["inputs"]):
        if not name.endswith(DECODED) or name[: -len(DECODED)] not in outputs:
            raise f.fail(f"head.inputs[{i}]", f"must be '<output>{DECODED}' of one of the outputs, got {name!r}")
    clash = set(head["outputs"]) & set(outputs)
    if clash:
        raise f.fail("head.outputs", f"repeats the graph output '{sorted(clash)[0]}'")
    f.get(head, "onnx", "head", str)


def _check_preprocessing(f: _Fields, prep: dict | None) -> None:
    if prep is None:
        return
    unknown = sorted(set(prep) - {"scale", "mean", "std", "layout"})
    if unknown:
        raise f.fail("preprocessing", f"has unknown field '{unknown[0]}'")
    scale = f.get(prep, "scale", "preprocessing", (int, float), optional=True)
    if scale is not None and not np.isfinite(scale):
        raise f.fail("preprocessing.scale", f"must be a finite number, got {scale}")
    for key in ("mean", "std"):
        values = f.get(prep, key, "preprocessing", list, optional=True)
        if values is not None and (
            not values
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) for v in values)
            or (key == "std" and any(v == 0 for v in values))
        ):
            what = f"must be a list of finite numbers (std nonzero), got {_short(values)}"
            raise f.fail(f"preprocessing.{key}", what)
    layout = f.get(prep, "layout", "preprocessing", str, optional=True)
    if layout is not None and layout not in ("nchw", "nhwc"):
        raise f.fail("preprocessing.layout", f"must be nchw or nhwc, got {layout!r}")
