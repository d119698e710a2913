"""The SNN artifact: an ONNX model in the stateful step form, plus the metadata that says
how to drive it. This module is the artifact's contract; the runtime reads nothing else.

- every ``onnx2snn.IF`` node takes ``(x, <node>.membrane, <node>.threshold)`` and gives
  ``(spikes, <node>.membrane_next)``; membranes are graph inputs/outputs, thresholds initializers;
- the IF function is defined in ``ModelProto.functions``, so a bare onnxruntime runs the file;
- ``metadata_props["onnx2snn"]`` holds a JSON object (see ``SNNModel.metadata``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError
from .graph import default_opset
from .neuron import DOMAIN, DOMAIN_VERSION, OP_TYPE, if_function

if TYPE_CHECKING:
    from .runtime.session import SNNSession

METADATA_KEY = "onnx2snn"
ENCODINGS = ("direct", "poisson")  # how the input drives the first layer
LARGE_MODEL = 1_800_000_000  # bytes; protobuf refuses to serialize 2 GiB
FORMAT = 1


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


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write the whole file or nothing: a temporary file beside it, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def attach_neuron(model: onnx.ModelProto, metadata: dict[str, Any]) -> onnx.ModelProto:
    """Give ``model`` the IF function, its domain import and the metadata."""
    opset = default_opset(model)
    del model.functions[:]
    model.functions.append(if_function(opset))
    if not any(imp.domain == DOMAIN for imp in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=json.dumps(metadata)))
    return model


class SNNModel:
    """A converted SNN: the ONNX step-form model and its metadata."""

    def __init__(self, proto: onnx.ModelProto, source: str | None = None):
        self.proto = proto
        self.source = source
        entry = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
        if entry is None:
            raise ModelError(f"{source or 'model'}: not an onnx2snn artifact (no '{METADATA_KEY}' metadata)")
        try:
            self.metadata: dict[str, Any] = json.loads(entry)
        except json.JSONDecodeError as e:
            raise ModelError(f"{source or 'model'}: corrupt onnx2snn metadata ({e})") from e
        if self.metadata.get("format", 0) > FORMAT:
            raise ModelError(
                f"{source or 'model'}: artifact format {self.metadata['format']} is newer than this onnx2snn"
            )

    def commit_metadata(self) -> None:
        """Write ``metadata`` (after a change) back into the model."""
        for prop in self.proto.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = json.dumps(self.metadata)

    # --- what the metadata says -------------------------------------------------------
    @property
    def layers(self) -> list[dict[str, Any]]:
        """One entry per IF layer: node, op it replaced, clip_max, membrane, membrane_next, threshold."""
        return self.metadata["layers"]

    @property
    def thresholds(self) -> dict[str, np.ndarray]:
        inits = {t.name: t for t in self.proto.graph.initializer}
        return {layer["node"]: numpy_helper.to_array(inits[layer["threshold"]]) for layer in self.layers}

    @property
    def timesteps(self) -> int:
        return int(self.metadata["timesteps"])

    @property
    def input_name(self) -> str:
        return self.metadata["input"]["name"]

    @property
    def input_shape(self) -> list[int | None]:
        return self.metadata["input"]["shape"]

    @property
    def outputs(self) -> list[str]:
        return self.metadata["outputs"]

    # --- actions ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact; past protobuf's 2 GB limit the weights go to ``<name>.data`` beside it."""
        path = Path(path)
        if self.proto.ByteSize() < LARGE_MODEL:
            write_atomic(path, self.proto.SerializeToString())
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            model = onnx.ModelProto()
            model.CopyFrom(self.proto)
            onnx.save_model(
                model,
                str(Path(tmp) / path.name),
                save_as_external_data=True,
                location=f"{path.name}.data",
                size_threshold=1024,
            )
            os.replace(Path(tmp) / f"{path.name}.data", path.parent / f"{path.name}.data")
            os.replace(Path(tmp) / path.name, path)
        return path

    def session(self, **kwargs: Any) -> SNNSession:
        from .runtime.session import SNNSession

        return SNNSession(self, **kwargs)

    def to_ann(self) -> onnx.ModelProto:
        """The ANN this SNN approximates: each IF back to its Relu/Clip, the output activation
        restored. Thresholds are dropped (an ANN has none)."""
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        graph = model.graph
        layers = {layer["node"]: layer for layer in self.layers}
        states = {layer["membrane"] for layer in self.layers} | {layer["membrane_next"] for layer in self.layers}
        pools = self.metadata.get("pools", [])
        for pool in pools:
            states |= {pool[k] for k in ("accumulated", "accumulated_next", "pooled", "pooled_next")}
        # spiking max-pools back to plain ones: MaxPool(x) instead of MaxPool(accumulated + x) - pooled
        pool_io = {}
        for node in graph.node:
            if any(node.name == f"{p['node']}.accumulate" for p in pools):
                pool_io[node.name[: -len(".accumulate")]] = [node.input[1], None]
        for node in graph.node:
            if any(node.name == f"{p['node']}.difference" for p in pools):
                pool_io[node.name[: -len(".difference")]][1] = node.output[0]
        pool_parts = {f"{name}.{part}" for name in pool_io for part in ("accumulate", "difference")}
        # calibrated current corrections are no part of the ANN: read around their Add nodes
        shifts = {f"{layer['node']}.current_correction" for layer in self.layers if layer.get("current_shift")}
        bypass = {n.output[0]: n.input[0] for n in graph.node if n.name in shifts}
        nodes = []
        for node in graph.node:
            if node.name in shifts or node.name in pool_parts:
                continue
            if node.name in pool_io:
                node.input[0], node.output[0] = pool_io[node.name]
            node.input[:] = [bypass.get(i, i) for i in node.input]
            if node.domain == DOMAIN and node.op_type == OP_TYPE:
                layer = layers[node.name]
                inputs = [node.input[0]]
                if layer["op"] == "Clip":
                    lo = f"{node.name}.clip_min"
                    graph.initializer.append(numpy_helper.from_array(np.array(0, np.float32), lo))
                    inputs.append(lo)
                    if layer.get("clip_max") is not None:
                        hi = f"{node.name}.clip_max"
                        graph.initializer.append(numpy_helper.from_array(np.array(layer["clip_max"], np.float32), hi))
                        inputs.append(hi)
                node = helper.make_node(layer["op"], inputs, [node.output[0]], name=node.name)
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
        for field in (graph.input, graph.output):
            kept = [v for v in field if v.name not in states]
            del field[:]
            field.extend(kept)
        thresholds = {layer["threshold"] for layer in self.layers}
        thresholds |= {layer[k] for layer in self.layers for k in ("current_shift", "membrane_init") if layer.get(k)}
        kept_init = [t for t in graph.initializer if t.name not in thresholds]
        del graph.initializer[:]
        graph.initializer.extend(kept_init)
        for name, act in self.metadata.get("output_activations", {}).items():
            out = next(v for v in graph.output if v.name == name)
            pre = f"{name}.pre_activation"
            for node in graph.node:
                node.output[:] = [pre if o == name else o for o in node.output]
                node.input[:] = [pre if i == name else i for i in node.input]
            graph.node.append(helper.make_node(act["op"], [pre], [out.name], axis=act["axis"]))
        del model.functions[:]
        imports = [imp for imp in model.opset_import if imp.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(imports)
        del model.metadata_props[:]
        return model


def load(path: str | os.PathLike | onnx.ModelProto) -> SNNModel:
    """Load an SNN artifact written by ``SNNModel.save``."""
    proto = load_onnx(path)
    return SNNModel(proto, source=None if isinstance(path, onnx.ModelProto) else str(path))
