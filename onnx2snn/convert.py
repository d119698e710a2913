"""The conversion pipeline, in the order of a paper's method section."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from .artifact import SNNModel, load_onnx
from .build import Neurons, assemble, shape_of
from .data import Dataset, as_dataset, check_input
from .errors import CalibrationError, ConfigError, ConversionError, DataError
from .graph import MIN_OPSET, default_opset, import_graph
from .neuron import DEFAULT_V_INIT
from .passes import (
    CANONICALIZE,
    calibrate,
    check_supported,
    correct_layers,
    output_activations,
    parse_method,
    per_layer_only,
    strip_output_activation,
)
from .passes.check_supported import ACTIVATIONS, POOLS, find_unsupported
from .passes.name_nodes import name_nodes
from .passes.resolve_shapes import PROBE, resolve_shapes
from .report import Report, describe_threshold

# the best combination measured by benchmarks/accuracy.py (see the README's Calibration section)
DEFAULT_METHOD = "mmse"
DEFAULT_PER_CHANNEL = True
DEFAULT_CORRECTIONS: tuple[str, ...] = ("potential",)
DEFAULT_TIMESTEPS = 16


def _is_onnx(model: Any) -> bool:
    return isinstance(model, (onnx.ModelProto, str, os.PathLike))


def _input_model(model: Any, calibration: Dataset) -> onnx.ModelProto:
    if _is_onnx(model):
        proto = load_onnx(model)
    elif hasattr(model, "state_dict") and callable(model):  # a torch.nn.Module
        from .export import from_torch

        proto = from_torch(model, calibration.x[:1])
    else:
        raise ConversionError(
            f"cannot convert a {type(model).__name__}: give an ONNX path, ModelProto or torch.nn.Module"
        )
    opset = default_opset(proto)
    if opset < MIN_OPSET:
        try:
            proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
        except Exception as e:
            raise ConversionError(f"opset {opset} model could not be upgraded to opset {MIN_OPSET}: {e}") from e
    return proto


def keep_outputs(graph, names: Sequence[str]):
    """The graph computing only the outputs named (what feeds the others is dropped)."""
    available = {t.name: t for t in graph.outputs}
    missing = [n for n in names if n not in available]
    if missing:
        raise ConversionError(
            f"no model output named {', '.join(map(repr, missing))}; the outputs are {', '.join(available)}"
        )
    graph.outputs = [available[n] for n in names]
    return graph.cleanup(remove_unused_graph_inputs=False)


def convert(
    model: onnx.ModelProto | str | os.PathLike | Any,
    calibration_data: Dataset | np.ndarray | str | os.PathLike,
    method: str = DEFAULT_METHOD,
    *,
    per_channel: bool = DEFAULT_PER_CHANNEL,
    corrections: Sequence[str] = DEFAULT_CORRECTIONS,
    timesteps: int = DEFAULT_TIMESTEPS,
    reset: str = "subtract",
    v_init: float = DEFAULT_V_INIT,
    encoding: str = "direct",
    calibration_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
    outputs: Sequence[str] | None = None,
) -> SNNModel:
    """Convert a ReLU ANN into a spiking network.

    ``model``: an ONNX file, a ModelProto or a ``torch.nn.Module``. ``calibration_data``: an
    array of model-ready inputs, a Dataset or a data spec. ``method``: ``max``,
    ``percentile:P``, ``mmse``, ``spike-norm`` or ``spike-norm:seed``. ``corrections``:
    any of ``bias``, ``potential``. ``timesteps``: the T that mmse, spike-norm and the
    corrections calibrate for, stored in the artifact as its default. ``encoding``: ``direct``
    or ``poisson`` (seeded by ``seed``). ``outputs``: the model outputs to keep (all by default;
    e.g. a classifier's probabilities without its label output)."""
    neurons = Neurons(reset=reset, v_init=v_init, timesteps=timesteps, encoding=encoding, seed=seed)
    if calibration_samples is not None and calibration_samples <= 0:
        raise ConfigError(f"calibration_samples must be positive, got {calibration_samples}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    corrections = tuple(dict.fromkeys(corrections))
    from .passes.correct_layers import KINDS

    if set(corrections) - set(KINDS):
        raise ConfigError(f"unknown correction in {list(corrections)}: use {' and/or '.join(KINDS)}")
    parse_method(method)
    if _is_onnx(model):
        model = load_onnx(model)  # a missing or broken model file is reported before the data
    try:
        calibration = as_dataset(calibration_data).sample(calibration_samples, seed)
    except DataError as e:
        raise CalibrationError(f"calibration data: {e}") from e

    ann = _input_model(model, calibration)
    graph, activations, report = canonical_graph(ann, outputs)
    # check: every node converts, or the node is named
    try:
        graph = check_supported(graph)
    except ConversionError as e:
        _mark_refused(report, e.problems or [e])
        e.report = report.rows()
        raise
    x = check_input(calibration.x, shape_of(graph.inputs[0]), graph.inputs[0].name, calibration.source)
    graph = resolve_shapes(graph, x[:PROBE])
    # calibrate: thresholds, then the training-free corrections
    thresholds = calibrate(graph, x, method, per_channel, neurons, batch_size)
    fixes = correct_layers(graph, thresholds, x, neurons, corrections, batch_size)
    # spike: every activation becomes an IF neuron
    metadata = {
        "output_activations": activations,
        "calibration": {
            "method": str(parse_method(method)),
            "per_channel": bool(per_channel) and not per_layer_only(method),
            "corrections": list(corrections),
            "samples": len(x),
            "seed": seed,
        },
        "preprocessing": calibration.preprocessing.to_dict(),
    }
    snn = assemble(graph, thresholds, neurons, corrections=fixes, metadata=metadata)
    for layer in snn.layers:
        report.mark(
            layer["node"], "converted", f"IF neuron, threshold {describe_threshold(snn.thresholds[layer['node']])}"
        )
    for pool in snn.metadata["pools"]:
        report.mark(pool["node"], "converted", "spiking max-pool over the accumulated input")
    snn.metadata["report"] = report.rows()
    snn.commit_metadata()
    snn.proto.producer_name = ann.producer_name or "onnx2snn"
    return snn


def canonical_graph(ann: onnx.ModelProto, outputs: Sequence[str] | None = None):
    """canonicalize: the ANN as plain linear layers and activations, its trailing output
    activations taken out. Returns (graph, output activations, report)."""
    graph = name_nodes(import_graph(ann))
    report = Report(graph)
    if outputs:
        graph = report.run(graph, lambda g: keep_outputs(g, outputs))
    for rewrite in CANONICALIZE:
        graph = report.run(graph, rewrite)
    activations = output_activations(graph)
    graph = report.run(graph, strip_output_activation)
    return graph, activations, report


def _mark_refused(report: Report, problems: Sequence[ConversionError]) -> None:
    for problem in problems:
        if problem.node:
            report.mark(problem.node, "refused", str(problem).split(": ", 1)[-1])


def analyze(model: onnx.ModelProto | str | os.PathLike) -> list[dict]:
    """What conversion would do to every node of an ANN, without calibrating: kept, folded,
    removed, converted to IF, or refused and why."""
    graph, _, report = canonical_graph(load_onnx(model))
    _mark_refused(report, find_unsupported(graph))
    for node in graph.nodes:
        if node.op in ACTIVATIONS and report.entries.get(node.name, {}).get("fate") == "kept":
            report.mark(node.name, "converted", "IF neuron (threshold set by calibration)")
        if node.op in POOLS:
            report.mark(node.name, "converted", "spiking max-pool where spikes reach it")
    return report.rows()
