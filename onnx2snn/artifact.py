"""The SNN artifact: an ONNX model in the stateful step form, plus the metadata that says
how to drive it. This module is the artifact's contract; the runtime reads nothing else.

- every ``onnx2snn.IF`` node takes ``(x, membrane, threshold)`` and gives
  ``(spikes, membrane_next)``; membranes are graph inputs/outputs, thresholds initializers;
- the IF function is defined in ``ModelProto.functions``, so a bare onnxruntime runs the file;
- ``metadata_props["onnx2snn"]`` holds a JSON object that names every tensor and node a reader
  needs (format 2):

  ``layers``  one per IF node: ``node``, ``op`` (the Relu/Clip it replaced), ``clip_max``,
              the state ``membrane`` -> ``membrane_next``, the ``threshold`` initializer,
              and where corrections were made: ``current_correction`` (the Add node) with its
              constant ``current_shift``, and ``membrane_init`` (initializer of the initial
              membrane; otherwise it is ``v_init * threshold``);
  ``pools``   one per spiking max-pool: ``node`` (the MaxPool), its ``accumulate`` (Add) and
              ``difference`` (Sub) nodes, states ``accumulated`` -> ``accumulated_next`` and
              ``pooled`` -> ``pooled_next`` (both start at zero);
  and ``input``, ``outputs``, ``output_activations``, ``decode``, ``encoding``, ``timesteps``,
  ``reset``, ``v_init``, ``calibration``, ``preprocessing``, ``report``.

Format 1 artifacts named the correction and pool nodes by convention only; they are read by
filling those names in (``_upgrade``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError
from .files import save_onnx
from .graph import default_opset
from .neuron import DEFAULT_V_INIT, DOMAIN, DOMAIN_VERSION, if_function, start_membrane
from .neurons import OP_TYPES as NEURON_OPS
from .neurons import function as neuron_function
from .version import __version__

METADATA_KEY = "onnx2snn"
FORMAT = 2


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
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not an ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from e
    if not proto.graph.node and not proto.graph.input:
        raise ModelError(f"{path}: not an ONNX model (no graph)")
    _load_external_data(proto, path)
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
    """Give ``model`` the IF function, its domain import and the metadata (with the artifact
    ``format`` and the onnx2snn ``version`` that wrote it)."""
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
    model.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=json.dumps(metadata)))
    return model


def _upgrade(metadata: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: name the correction and pool nodes that format 1 found by convention."""
    if metadata.get("format", 0) >= 2:
        return metadata
    for layer in metadata.get("layers", []):
        if layer.get("current_shift"):
            layer.setdefault("current_correction", f"{layer['node']}.current_correction")
    for pool in metadata.get("pools", []):
        pool.setdefault("accumulate", f"{pool['node']}.accumulate")
        pool.setdefault("difference", f"{pool['node']}.difference")
    return metadata


class SNNModel:
    """A converted SNN: the ONNX step-form model and its metadata (see the module docstring)."""

    def __init__(self, proto: onnx.ModelProto, source: str | None = None):
        self.proto = proto
        self.source = source
        entry = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
        if entry is None:
            raise ModelError(f"{self._name}: not an onnx2snn artifact (no '{METADATA_KEY}' metadata)")
        try:
            metadata = json.loads(entry)
        except json.JSONDecodeError as e:
            raise ModelError(f"{self._name}: corrupt onnx2snn metadata ({e})") from e
        if metadata.get("format", 0) > FORMAT:
            raise ModelError(f"{self._name}: artifact format {metadata['format']} is newer than this onnx2snn")
        self.metadata: dict[str, Any] = _upgrade(metadata)

    @property
    def _name(self) -> str:
        return self.source or "model"

    def commit_metadata(self) -> None:
        """Write ``metadata`` (after a change) back into the model."""
        for prop in self.proto.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = json.dumps(self.metadata)

    # --- what the metadata says -------------------------------------------------------
    @property
    def layers(self) -> list[dict[str, Any]]:
        """One entry per IF layer (see the module docstring)."""
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

    @property
    def thresholds(self) -> dict[str, np.ndarray]:
        return {layer["node"]: self.initializer(layer["threshold"]) for layer in self.layers}

    @property
    def v_init(self) -> float:
        return float(self.metadata.get("v_init", DEFAULT_V_INIT))

    def initial_membrane(self, layer: dict[str, Any]) -> np.ndarray:
        """Where ``layer``'s membranes start: its stored initial membrane (potential
        correction), else v_init x threshold; broadcastable to the membrane."""
        if layer.get("membrane_init"):
            return self.initializer(layer["membrane_init"]).astype(np.float32)
        return start_membrane(self.initializer(layer["threshold"]), self.v_init)

    def states(self) -> list[State]:
        """Every state of the step form, membranes first, then the pools' (which start at 0)."""
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
    def timesteps(self) -> int:
        return int(self.metadata["timesteps"])

    @property
    def encoding(self) -> str:
        return self.metadata.get("encoding", "direct")

    @property
    def input_name(self) -> str:
        return self.metadata["input"]["name"]

    @property
    def sequence_input(self) -> bool:
        """Whether the data input is a sequence: ``x`` of shape [N, T, ...], one [N, ...] slice
        fed at each step (``input.shape`` is a slice's), instead of the same input every step."""
        return bool(self.metadata["input"].get("sequence", False))

    @property
    def input_shape(self) -> list[int | None]:
        return self.metadata["input"]["shape"]

    @property
    def outputs(self) -> list[str]:
        return self.metadata["outputs"]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact; past protobuf's 2 GB limit the weights go to ``<name>.data`` beside it."""
        return save_onnx(self.proto, path)


def load(path: str | os.PathLike | onnx.ModelProto) -> SNNModel:
    """Load an SNN artifact written by ``SNNModel.save``."""
    proto = load_onnx(path)
    return SNNModel(proto, source=None if isinstance(path, onnx.ModelProto) else str(path))
