"""The few helpers every pass shares: moving between ModelProto and onnx-graphsurgeon's Graph,
and asking whether a tensor is a constant."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER

from .errors import ModelError

# graph surgery reports its own trouble through our errors; its chatter stays quiet (its
# critical messages too: they come back as exceptions)
G_LOGGER.severity = G_LOGGER.CRITICAL + 1

# onnxruntime reads models up to this IR version; onnx writes newer ones by default.
IR_VERSION = 10
MIN_OPSET = 13


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """``model`` as a graphsurgeon Graph, or a ModelError saying why it cannot be one."""
    try:
        return gs.import_onnx(model)
    except Exception as e:  # graphsurgeon raises its own exception, KeyError, ValueError, ...
        raise ModelError(f"the model's graph cannot be read ({type(e).__name__}: {e})") from e


def export_model(graph: gs.Graph, opset_imports: Iterable[onnx.OperatorSetIdProto] | None = None) -> onnx.ModelProto:
    """Export ``graph`` to a ModelProto that onnxruntime accepts (IR version ``IR_VERSION``),
    with ``opset_imports`` instead of the ones graphsurgeon derives, when given (a model
    derived from another keeps that one's)."""
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = IR_VERSION
    if opset_imports is not None:
        imports = list(opset_imports)
        del model.opset_import[:]
        model.opset_import.extend(imports)
    return model


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


def shape_of(tensor: gs.Tensor) -> list[int | None]:
    """A tensor's dimensions, None for every one that is not a fixed integer."""
    return [d if isinstance(d, int) else None for d in (tensor.shape or [])]


def is_constant(tensor: gs.Tensor) -> bool:
    if isinstance(tensor, gs.Constant):
        return True
    producer = tensor.inputs[0] if tensor.inputs else None
    return producer is not None and producer.op == "Constant" and "value" in producer.attrs


def constant_value(tensor: gs.Tensor) -> np.ndarray:
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    value = tensor.inputs[0].attrs["value"]
    return np.asarray(value.values)


def replace_uses(graph: gs.Graph, old: gs.Tensor, new: gs.Tensor) -> bool:
    """Make every consumer of ``old`` read ``new`` instead, keeping graph output names stable.
    Returns False (and changes nothing) where ``old`` is a graph output that ``new`` cannot
    stand in for under ``old``'s name (``new`` is a graph input, constant or output itself)."""
    if old in graph.outputs:
        if new in graph.inputs or new in graph.outputs or isinstance(new, gs.Constant):
            return False
        name = old.name
        old.name = f"{name}__replaced"
        new.name = name
        graph.outputs = [new if t is old else t for t in graph.outputs]
    for consumer in list(old.outputs):
        consumer.inputs = [new if t is old else t for t in consumer.inputs]
    return True


def reached_from(graph: gs.Graph, sources: Iterable[str]) -> set[str]:
    """Names of ``sources`` and of every tensor that depends on one of them (the graph is
    sorted in place, nodes only: local functions and Scan/Loop bodies are not entered)."""
    reached = set(sources)
    for node in graph.toposort(mode="nodes").nodes:
        if any(t.name in reached for t in node.inputs):
            reached.update(t.name for t in node.outputs)
    return reached
