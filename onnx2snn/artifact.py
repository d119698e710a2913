"""The SNN artifact: an ONNX model in the stateful step form, plus the metadata that says
how to drive it. This module is the artifact's contract; the runtime reads nothing else.

- every neuron node (domain ``onnx2snn``) takes ``(x, membrane, threshold, ...)`` and gives
  ``(spikes, membrane_next, ...)``: ``IF`` and ``MultiSpikeIF`` (conversions), ``LIF`` and
  ``CubaLIF`` (graphs read from NIR, neurons.py; CubaLIF takes ``(x, membrane, current,
  threshold, ...)`` and gives ``current_next`` too); states are graph inputs/outputs,
  thresholds initializers;
- the neurons' functions are defined in ``ModelProto.functions``, so a bare onnxruntime runs
  the file;
- every tensor with a free batch axis names it with one symbol (``batch`` in the metadata), so
  runtimes that unify symbols (tract) see one batch;
- each membrane's initial value is part of the graph: a Constant node whose output
  ``<node>.membrane_init`` is a graph output (broadcastable to the membrane), so simplifiers
  keep it (they may fold it into an initializer of that name; readers accept either);
- ``metadata_props["onnx2snn"]`` holds a JSON object that names every tensor and node a reader
  needs (format 3):

  ``layers``  one per neuron node: ``node``, ``op`` (the Relu/Clip it replaced, or the NIR
              node it was read from: IF, LIF, CubaLIF), ``clip_max``, the state ``membrane``
              -> ``membrane_next``, the ``threshold`` initializer, the constant output
              ``membrane_init`` (``v_init * threshold``, or the potential correction's initial
              membrane), where a bias correction was made ``current_correction`` (the Add
              node) with its constant ``current_shift``, and for a CubaLIF the state
              ``current`` -> ``current_next`` (starting at 0);
  ``pools``   one per spiking max-pool: ``node`` (the MaxPool), its ``accumulate`` (Add) and
              ``difference`` (Sub) nodes, states ``accumulated`` -> ``accumulated_next`` and
              ``pooled`` -> ``pooled_next`` (both start at zero);
  ``inputs``  one per data input: ``name``, ``shape`` (None for a free axis), ``encoding``,
              and ``sequence: true`` where the input is a sequence [N, T, ...] fed one slice a
              step (``shape`` is a slice's);
  ``report``  the conversion report's rows for the ANN nodes conversion changed (converted,
              folded, removed, moved, ...): ``node``, ``op``, ``fate``, ``detail``; every other
              node of the ANN was kept as it is and stands in the graph under its own name
              (older artifacts list those rows too; ``SNNModel.report`` has them all right
              after a conversion);
  and ``batch``, ``outputs``, ``output_activations``, ``decode``, ``encoding``, ``timesteps``
  (0 with a sequence input: as many steps as the sequence holds), ``reset``, ``v_init``,
  ``spike_mode`` (``multi``: MultiSpikeIF neurons; ``single`` where absent), ``calibration``,
  ``preprocessing``; a graph read from NIR has ``source: "nir"`` and ``nir`` (``dt``,
  ``version``, ``file``) instead of a calibration. The JSON is written without spaces: on a small
  model the metadata is a visible part of the file.

Older formats are read by upgrading them on load (``_upgrade``): format 1 named the correction
and pool nodes by convention only; format 2 had one ``input``, a batch symbol per exporter
(``batch`` on the input, ``N`` elsewhere) and initial membranes as initializers no node read
(simplifiers dropped them), or none where they were ``v_init * threshold``.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .checks import check_graph, check_metadata, check_nodes, check_opset, check_tensors, check_text
from .errors import ModelError
from .files import save_onnx
from .graph import default_opset
from .neuron import DEFAULT_V_INIT, DOMAIN, DOMAIN_VERSION, if_function, start_membrane
from .neurons import OP_TYPES as NEURON_OPS
from .neurons import function as neuron_function
from .version import __version__

METADATA_KEY = "onnx2snn"
FORMAT = 3
DEFAULT_BATCH = "N"  # the batch symbol where the ANN's input had none
# metadata an artifact may leave out, and what it means then
OPTIONAL: dict[str, Any] = {
    "format": 1,
    "version": "unknown",
    "pools": [],
    "output_activations": {},
    "decode": "mean",
    "encoding": "direct",
    "reset": "subtract",
    "v_init": DEFAULT_V_INIT,
    "calibration": {"method": "unknown", "per_channel": False, "corrections": [], "samples": None},
    "preprocessing": {},
    "report": [],
}


def metadata_text(metadata: dict[str, Any]) -> str:
    """The metadata as stored in ``metadata_props``: compact JSON."""
    return json.dumps(metadata, separators=(",", ":"))


@dataclass(frozen=True)
class State:
    """One recurrent tensor of the step form: fed as ``input``, read back as ``output``,
    starting at ``initial`` (broadcastable to the state's shape)."""

    input: str
    output: str
    initial: np.ndarray


def load_onnx(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """An ONNX model from a ModelProto or a file, with a ModelError naming the file if not."""
    if isinstance(model, onnx.ModelProto):
        check_text(model, "model")
        check_opset(model, "model")
        check_graph(model.graph, "model")
        check_nodes(model, "model")
        check_tensors(model, "model")
        return model
    path = Path(model)
    if path.is_dir():
        raise ModelError(f"{path}: a folder, not a model file")
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        first = next((line for line in str(e).splitlines() if line.strip()), "")[:120]
        raise ModelError(f"{path}: not an ONNX model ({type(e).__name__}: {first})") from e
    if not proto.graph.node and not proto.graph.input:
        raise ModelError(f"{path}: not an ONNX model (no graph)")
    check_text(proto, str(path))
    check_opset(proto, str(path))
    check_graph(proto.graph, str(path))
    check_nodes(proto, str(path))
    _load_external_data(proto, path)
    check_tensors(proto, str(path))
    return proto


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read weights stored beside the model (the dynamo exporter's ``.onnx.data``), refusing any
    location outside the model's folder."""
    from onnx import external_data_helper as ext

    folder = path.parent.resolve()
    tensors = [t for t in ext._get_all_tensors(proto) if ext.uses_external_data(t)]
    for tensor in tensors:
        info = ext.ExternalDataInfo(tensor)
        target = (folder / info.location).resolve()
        if Path(info.location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(f"{path}: tensor '{tensor.name}' points outside the model's folder ({info.location})")
        if not target.is_file():
            raise ModelError(f"{path}: tensor '{tensor.name}' needs {info.location}, which is missing")
    if tensors:
        try:
            ext.load_external_data_for_model(proto, str(folder))
        except Exception as e:
            raise ModelError(f"{path}: external data unreadable ({e})") from e


def attach_neuron(model: onnx.ModelProto, metadata: dict[str, Any]) -> onnx.ModelProto:
    """Give ``model`` the IF function (and those of the other neurons its nodes call), its
    domain import and the metadata (with the artifact ``format`` and the onnx2snn ``version``
    that wrote it)."""
    opset = default_opset(model)
    del model.functions[:]
    model.functions.append(if_function(opset))
    used = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    model.functions.extend(neuron_function(op, opset) for op in NEURON_OPS if op in used)
    if not any(imp.domain == DOMAIN for imp in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    metadata = {"format": FORMAT, "version": __version__, **metadata}
    model.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=metadata_text(metadata)))
    return model


def batch_symbol(model: onnx.ModelProto, inputs: list[str] | None = None) -> str | None:
    """The symbol of the data inputs' batch axis (the first one that has a name), DEFAULT_BATCH
    where it is free but unnamed, None where it is fixed."""
    values = [v for v in model.graph.input if inputs is None or v.name in inputs]
    dims = [v.type.tensor_type.shape.dim[0] for v in values if v.type.tensor_type.shape.dim]
    if not dims or all(d.HasField("dim_value") for d in dims):
        return None
    return next((d.dim_param for d in dims if d.dim_param), DEFAULT_BATCH)


def name_batch(model: onnx.ModelProto, symbol: str | None) -> onnx.ModelProto:
    """Name the free leading axis of every graph input, output and value_info ``symbol``: one
    batch symbol everywhere (the graph's tensors carry the batch on axis 0, or no free axis)."""
    if symbol is None:
        return model
    graph = model.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = symbol
    return model


def add_initial_membranes(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """For each ``name -> value``: a Constant node with output ``name``, made a graph output, so
    the initial membrane is part of the graph (a node reads it, a simplifier keeps it)."""
    graph = model.graph
    for name, value in values.items():
        value = np.asarray(value, np.float32)
        graph.node.append(
            helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value, name))
        )
        graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(value.shape)))
    return model


def head_metadata(model: onnx.ModelProto | None, ann_outputs: list[str]) -> dict[str, Any] | None:
    """The artifact's record of a trailing head: its inputs (``<z>.decoded``, the decoded means
    of graph outputs ``z``), the ANN outputs it makes, the ANN's outputs in their order, and the
    head itself (ONNX, base64)."""
    if model is None:
        return None
    return {
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
        "ann_outputs": ann_outputs,
        "onnx": base64.b64encode(model.SerializeToString()).decode("ascii"),
    }


def _upgrade(metadata: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: name the correction and pool nodes that format 1 found by convention.
    Format 2 -> 3: a list of ``inputs`` (see ``_upgrade_graph`` for the rest). Whatever is
    malformed is left as it is, for check_metadata to name."""
    fmt = metadata.get("format")
    fmt = OPTIONAL["format"] if fmt is None else fmt
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt >= FORMAT:
        return metadata

    def entries(key: str) -> list[dict]:
        found = metadata.get(key)
        return [e for e in found if isinstance(e, dict) and "node" in e] if isinstance(found, list) else []

    if fmt < 2:
        for layer in entries("layers"):
            if layer.get("current_shift"):
                layer.setdefault("current_correction", f"{layer['node']}.current_correction")
        for pool in entries("pools"):
            pool.setdefault("accumulate", f"{pool['node']}.accumulate")
            pool.setdefault("difference", f"{pool['node']}.difference")
    if "inputs" not in metadata and isinstance(metadata.get("input"), dict):
        metadata["inputs"] = [{**metadata.pop("input"), "encoding": metadata.get("encoding") or "direct"}]
    return metadata


def _upgrade_graph(proto: onnx.ModelProto, metadata: dict[str, Any]) -> onnx.ModelProto:
    """Format 2 -> 3 in the graph, on a copy: one batch symbol, and every initial membrane a
    constant graph output (from its initializer, or ``v_init * threshold``)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inputs = [i["name"] for i in metadata["inputs"]]
    metadata["batch"] = batch_symbol(model, inputs)
    name_batch(model, metadata["batch"])
    inits = {t.name: t for t in model.graph.initializer}
    v_init = float(metadata.get("v_init", DEFAULT_V_INIT))
    values = {}
    produced = {out for node in model.graph.node for out in node.output}
    for layer in metadata.get("layers", []):
        if layer.get("membrane_init") in produced:
            continue  # already a constant output
        stored = inits.get(layer.get("membrane_init") or "")
        if stored is not None:
            model.graph.initializer.remove(stored)
            value = numpy_helper.to_array(stored)
        elif layer["threshold"] in inits:
            value = start_membrane(numpy_helper.to_array(inits[layer["threshold"]]), v_init)
        else:
            continue  # SNNModel.initializer names what is missing when the state is read
        layer["membrane_init"] = f"{layer['node']}.membrane_init"
        values[layer["membrane_init"]] = value
    add_initial_membranes(model, values)
    metadata["format"] = FORMAT
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = metadata_text(metadata)
    return model


class SNNModel:
    """A converted SNN: the ONNX step-form model and its metadata (see the module docstring)."""

    def __init__(self, proto: onnx.ModelProto, source: str | None = None):
        self.proto = proto
        self.source = source
        self.conversion_report: list[dict[str, str]] | None = None  # every ANN node: set by convert
        entry = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
        if entry is None:
            raise ModelError(f"{self._name}: not an onnx2snn artifact (no '{METADATA_KEY}' metadata)")
        try:
            metadata = json.loads(entry)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ModelError(f"{self._name}: corrupt onnx2snn metadata (not JSON: {e})") from e
        if not isinstance(metadata, dict):
            kind = type(metadata).__name__
            raise ModelError(f"{self._name}: corrupt onnx2snn metadata: must be a JSON object, got a {kind}")
        fmt = metadata.get("format", 0)
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
            raise ModelError(f"{self._name}: artifact format {fmt} is newer than this onnx2snn")
        self.metadata: dict[str, Any] = _upgrade(metadata)
        check_metadata(self.metadata, proto, self._name)  # every name it holds is in the graph
        for key, value in OPTIONAL.items():  # what an older or hand-made artifact leaves out
            if self.metadata.get(key) is None:
                self.metadata[key] = json.loads(json.dumps(value))
        if self.metadata["format"] < FORMAT:
            self.proto = _upgrade_graph(proto, self.metadata)

    @property
    def _name(self) -> str:
        return self.source or "model"

    def require_neurons(self, what: str) -> None:
        """A ModelError where ``what`` needs the IF nodes and the artifact has them inlined."""
        if self.metadata.get("inlined"):
            raise ModelError(f"{self._name}: its IF neurons are inlined; {what} needs the step artifact it came from")

    def commit_metadata(self) -> None:
        """Write ``metadata`` (after a change) back into the model."""
        for prop in self.proto.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = metadata_text(self.metadata)

    # --- what the metadata says -------------------------------------------------------
    @property
    def report(self) -> list[dict[str, str]]:
        """The conversion report: every ANN node right after ``convert``; for an artifact read
        from a file, the rows the metadata keeps (the nodes conversion changed)."""
        return self.conversion_report if self.conversion_report is not None else self.metadata["report"]

    @property
    def layers(self) -> list[dict[str, Any]]:
        """One entry per neuron layer (see the module docstring)."""
        return self.metadata["layers"]

    @property
    def pools(self) -> list[dict[str, Any]]:
        """One entry per spiking max-pool (see the module docstring)."""
        return self.metadata.get("pools", [])

    def initializer(self, name: str) -> np.ndarray:
        """The value of the initializer ``name`` that the metadata refers to."""
        for tensor in self.proto.graph.initializer:
            if tensor.name == name:
                return numpy_helper.to_array(tensor)
        raise ModelError(f"{self._name}: the metadata names initializer '{name}', which the graph lacks")

    def constant(self, name: str) -> np.ndarray:
        """The value of the constant tensor ``name`` the metadata refers to: an initializer, or
        computed from initializers and Constant nodes alone (as a simplifier may leave it)."""
        graph = self.proto.graph
        for tensor in graph.initializer:
            if tensor.name == name:
                return numpy_helper.to_array(tensor)
        producers = {out: node for node in graph.node for out in node.output}
        if name not in producers:
            raise ModelError(f"{self._name}: the metadata names tensor '{name}', which the graph lacks")
        node = producers[name]
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return self._evaluate(name, producers)

    def _evaluate(self, name: str, producers: dict[str, onnx.NodeProto]) -> np.ndarray:
        """Run the nodes ``name`` depends on (with onnx's reference evaluator), provided none
        reads a graph input."""
        from onnx.reference import ReferenceEvaluator

        graph = self.proto.graph
        inits = {t.name for t in graph.initializer}
        needed, stack, seen = [], [name], set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in inits or not tensor:
                continue
            seen.add(tensor)
            if tensor not in producers:
                raise ModelError(f"{self._name}: tensor '{name}' is not a constant (it depends on '{tensor}')")
            node = producers[tensor]
            if node not in needed:
                needed.append(node)
            stack.extend(node.input)
        order = [n for n in graph.node if n in needed]
        used = {i for n in order for i in n.input}
        sub = helper.make_graph(
            order,
            "constant",
            [],
            [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)],
            initializer=[t for t in graph.initializer if t.name in used],
        )
        model = helper.make_model(sub, opset_imports=list(self.proto.opset_import), ir_version=self.proto.ir_version)
        try:
            return np.asarray(ReferenceEvaluator(model).run(None, {})[0])
        except Exception as e:
            raise ModelError(f"{self._name}: tensor '{name}' could not be computed ({type(e).__name__}: {e})") from e

    @property
    def thresholds(self) -> dict[str, np.ndarray]:
        return {layer["node"]: self.initializer(layer["threshold"]) for layer in self.layers}

    @property
    def v_init(self) -> float:
        return float(self.metadata.get("v_init", DEFAULT_V_INIT))

    def initial_membrane(self, layer: dict[str, Any]) -> np.ndarray:
        """Where ``layer``'s membranes start (the constant output ``membrane_init``: v_init x
        threshold, or the potential correction's), broadcastable to the membrane."""
        if layer.get("membrane_init"):
            return np.asarray(self.constant(layer["membrane_init"]), np.float32)
        return start_membrane(self.initializer(layer["threshold"]), self.v_init)

    def states(self) -> list[State]:
        """Every state of the step form, membranes first, then CubaLIF currents and the pools'
        (which start at 0); a ModelError names a state the metadata lists and the graph lacks."""
        names = [(layer["membrane"], layer["membrane_next"]) for layer in self.layers]
        names += [(layer["current"], layer["current_next"]) for layer in self.layers if layer.get("current")]
        names += [(pool[a], pool[f"{a}_next"]) for pool in self.pools for a in ("accumulated", "pooled")]
        inputs = {v.name for v in self.proto.graph.input}
        outputs = {v.name for v in self.proto.graph.output}
        for state, state_next in names:
            for name, kind, present in ((state, "input", inputs), (state_next, "output", outputs)):
                if name not in present:
                    raise ModelError(f"{self._name}: the metadata names state {kind} '{name}', which the graph lacks")
        states = [
            State(layer["membrane"], layer["membrane_next"], self.initial_membrane(layer)) for layer in self.layers
        ]
        zero = np.zeros((), np.float32)
        # a CubaLIF layer's synaptic current (NIR graphs), starting at 0
        currents = [layer for layer in self.layers if layer.get("current")]
        states += [State(layer["current"], layer["current_next"], zero) for layer in currents]
        for pool in self.pools:
            states.append(State(pool["accumulated"], pool["accumulated_next"], zero))
            states.append(State(pool["pooled"], pool["pooled_next"], zero))
        return states

    @property
    def head(self) -> dict[str, Any] | None:
        """The trailing head applied after decoding (``head_metadata``), or None."""
        return self.metadata.get("head")

    def head_model(self) -> onnx.ModelProto:
        """The head as an ONNX model from ``<z>.decoded`` to the ANN outputs it makes."""
        try:
            return onnx.load_from_string(base64.b64decode(self.head["onnx"]))
        except Exception as e:
            raise ModelError(f"{self._name}: corrupt output head in the metadata ({e})") from e

    @property
    def model_outputs(self) -> list[str]:
        """Every output a session decodes: the graph's outputs, then the head's."""
        return self.outputs + (self.head["outputs"] if self.head else [])

    @property
    def timesteps(self) -> int:
        return int(self.metadata["timesteps"])

    @property
    def encoding(self) -> str:
        return self.metadata.get("encoding", "direct")

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """One entry per data input: ``name``, ``shape`` (None for a free axis), ``encoding``."""
        return self.metadata["inputs"]

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    @property
    def input_name(self) -> str:
        """The first data input's name (the only one of most models)."""
        return self.inputs[0]["name"]

    @property
    def sequence_input(self) -> bool:
        """Whether a data input is a sequence: ``x`` of shape [N, T, ...], one [N, ...] slice fed
        at each step (its ``shape`` is a slice's), instead of the same input every step."""
        return any(i.get("sequence", False) for i in self.inputs)

    @property
    def input_shape(self) -> list[int | None]:
        return self.inputs[0]["shape"]

    @property
    def batch(self) -> str | None:
        """The symbol of the free batch axis (None where the batch is fixed)."""
        return self.metadata.get("batch")

    @property
    def outputs(self) -> list[str]:
        return self.metadata["outputs"]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact; past protobuf's 2 GB limit the weights go to ``<name>.data`` beside it."""
        return save_onnx(self.proto, path)


def is_artifact(model: onnx.ModelProto) -> bool:
    """Whether ``model`` claims to be an onnx2snn artifact (it holds onnx2snn metadata, whole or
    not: ``load`` says what is wrong with it)."""
    return any(p.key == METADATA_KEY for p in model.metadata_props)


def load(path: str | os.PathLike | onnx.ModelProto) -> SNNModel:
    """Load an SNN artifact written by ``SNNModel.save``."""
    proto = load_onnx(path)
    return SNNModel(proto, source=None if isinstance(path, onnx.ModelProto) else str(path))
