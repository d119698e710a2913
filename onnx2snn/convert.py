"""The conversion pipeline: a list of named steps, in the order of a paper's method section.

    PIPELINE
      name every node            unique names: reports, errors and states are named after nodes
      keep the outputs asked for only those, when the user names some
      canonicalize               shapes, constant folding, Dropout/Identity out, BatchNorm folded,
                                 MatMul + Add as Gemm (passes.CANONICALIZE)
      move output activations    a trailing head (Softmax, ArgMax, label lookup, Cast) is
                                 applied after decoding
      check                      every node converts, or a ConversionError names it
      resolve shapes             concrete shapes where inference left holes (the ANN runs once)
      share out the data         the calibration data in shards, held by workers (one, here,
                                 by default; Ray actors for distributed runs)
      calibrate thresholds       one table of methods (calibration.METHODS)
      correct layers             the training-free corrections, level by level
      spike                      activations become IF neurons, max-pools on spikes spiking ones
      package                    the artifact: IF function, metadata, checked by ONNX's checker

Each step reads and writes one ``Conversion``; ``analyze`` runs the steps before ``check`` and
reports instead of refusing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .artifact import SNNModel, head_metadata, load_onnx
from .build import SpikingGraph, package, spike
from .calibration import PROBE, Method, calibrate, check_corrections, correct_layers, parse_method, resolve_shapes
from .calibration.shards import LocalWorkers
from .data import Dataset, Inputs, as_dataset, check_inputs, num_samples, take
from .errors import CalibrationError, ConfigError, ConversionError, DataError
from .graph import MIN_OPSET, default_opset, import_graph, shape_of
from .limits import as_float, as_int, as_timesteps
from .neuron import DEFAULT_V_INIT, Corrections, Neurons
from .passes import (
    CANONICALIZE,
    check_supported,
    find_unsupported,
    keep_outputs,
    move_output_head,
    name_nodes,
    output_activations,
    strip_output_activation,
)
from .passes.check_supported import ACTIVATIONS, POOLS
from .report import Report, describe_threshold

# the best combination measured by benchmarks/accuracy.py (see the README's Calibration section)
DEFAULT_METHOD = "mmse"
DEFAULT_PER_CHANNEL = True
DEFAULT_CORRECTIONS: tuple[str, ...] = ("potential",)
DEFAULT_TIMESTEPS = 16


@dataclass(frozen=True)
class ConvertOptions:
    """Every choice of a conversion, validated when made (before any model or data is read)."""

    method: Method
    per_channel: bool
    corrections: tuple[str, ...]
    neurons: Neurons
    calibration_samples: int | None
    batch_size: int
    outputs: tuple[str, ...] | None

    @classmethod
    def make(
        cls,
        method: str | Method = DEFAULT_METHOD,
        *,
        per_channel: bool = DEFAULT_PER_CHANNEL,
        corrections: Sequence[str] = DEFAULT_CORRECTIONS,
        timesteps: int = DEFAULT_TIMESTEPS,
        reset: str = "subtract",
        v_init: float = DEFAULT_V_INIT,
        encoding: str | dict[str, str] = "direct",
        calibration_samples: int | None = None,
        seed: int = 0,
        batch_size: int = 128,
        outputs: Sequence[str] | None = None,
        spike_mode: str = "single",
    ) -> ConvertOptions:
        """The options of ``convert`` (see there), or a ConfigError naming the bad one."""
        with _option("method"):
            method = parse_method(method)
        if isinstance(corrections, str):
            corrections = [c for c in corrections.split(",") if c]
        with _option("corrections"):
            corrections = check_corrections(corrections)
        timesteps = as_timesteps(timesteps)
        v_init = as_float(v_init, "v_init")
        seed = as_int(seed, "seed", minimum=0)
        if isinstance(encoding, dict):  # by data input; those not named are direct
            if not all(isinstance(name, str) for name in encoding):
                raise ConfigError(f"encoding must name data inputs, got {encoding!r}", option="encoding")
            per_input, default = tuple(sorted(encoding.items())), "direct"
        else:
            per_input, default = (), encoding
        each = {"reset": {"reset": reset}, "v_init": {"v_init": v_init}}
        each["encoding"] = {"encoding": default, "input_encodings": per_input}
        each["spike_mode"] = {"spike_mode": spike_mode, "reset": "subtract"}
        for name, fields in each.items():
            with _option(name):
                Neurons(**fields)
        with _option("spike_mode"):  # multi-spike neurons reset by subtraction only
            neurons = Neurons(reset, v_init, timesteps, default, seed, input_encodings=per_input, spike_mode=spike_mode)
        if calibration_samples is not None:
            calibration_samples = as_int(calibration_samples, "calibration_samples")
        if isinstance(outputs, str):
            outputs = [outputs]
        if outputs is not None and not all(isinstance(o, str) for o in outputs):
            raise ConfigError(f"outputs must be output names, got {outputs!r}", option="outputs")
        return cls(
            method=method,
            per_channel=bool(per_channel),
            corrections=corrections,
            neurons=neurons,
            calibration_samples=calibration_samples,
            batch_size=as_int(batch_size, "batch_size"),
            outputs=tuple(outputs) if outputs else None,
        )


@contextlib.contextmanager
def _option(name: str) -> Iterator[None]:
    """Name the option a ConfigError raised inside the block is about."""
    try:
        yield
    except ConfigError as e:
        e.option = e.option or name
        raise


@dataclass
class Conversion:
    """What the pipeline's steps read and write, from the ANN to the artifact."""

    ann: onnx.ModelProto
    options: ConvertOptions
    calibration: Dataset | None = None
    graph: gs.Graph | None = None
    report: Report | None = None
    output_activations: dict[str, dict] = field(default_factory=dict)
    head: onnx.ModelProto | None = None  # the trailing head beyond a softmax, applied after decoding
    ann_outputs: list[str] = field(default_factory=list)
    x: Inputs | None = None
    thresholds: dict[str, np.ndarray] = field(default_factory=dict)
    corrections: Corrections = field(default_factory=Corrections)
    spiking: SpikingGraph | None = None
    snn: SNNModel | None = None
    # (graph, inputs, neurons, batch size) -> the workers that hold the calibration data in shards
    make_workers: Callable[..., Any] | None = None
    workers: Any = None


def name_every_node(c: Conversion) -> None:
    c.graph = name_nodes(import_graph(c.ann))
    c.report = Report(c.graph)


def keep_the_outputs_asked_for(c: Conversion) -> None:
    if c.options.outputs:
        names = c.options.outputs
        c.graph = c.report.run(c.graph, lambda g: keep_outputs(g, names), "keep_outputs")


def canonicalize(c: Conversion) -> None:
    for rewrite in CANONICALIZE:
        c.graph = c.report.run(c.graph, rewrite)


def move_output_activations(c: Conversion) -> None:
    c.ann_outputs = [t.name for t in c.graph.outputs]

    def move_head(graph: gs.Graph) -> gs.Graph:
        graph, c.head = move_output_head(graph, list(c.ann.opset_import))
        return graph

    c.graph = c.report.run(c.graph, move_head, "move_output_head")
    c.output_activations = output_activations(c.graph)
    c.graph = c.report.run(c.graph, strip_output_activation)


def check(c: Conversion) -> None:
    try:
        c.graph = check_supported(c.graph)
    except ConversionError as e:
        _mark_refused(c.report, e.problems or [e])
        e.report = c.report.rows()
        raise


def resolve_the_shapes(c: Conversion) -> None:
    names = [t.name for t in c.graph.inputs]
    unknown = [name for name, _ in c.options.neurons.input_encodings if name not in names]
    if unknown:
        raise ConfigError(
            f"encoding names no data input {', '.join(map(repr, unknown))}; the inputs are {', '.join(names)}"
        )
    c.x = check_inputs(c.calibration.x, [(t.name, shape_of(t)) for t in c.graph.inputs], c.calibration.source)
    c.graph = resolve_shapes(c.graph, take(c.x, slice(0, PROBE)))


def share_out_the_data(c: Conversion) -> None:
    o = c.options
    make = c.make_workers or LocalWorkers.of
    c.workers = make(c.graph, c.x, o.neurons, o.batch_size)


def calibrate_thresholds(c: Conversion) -> None:
    o = c.options
    c.thresholds = calibrate(c.graph, c.x, o.method, o.per_channel, o.neurons, o.batch_size, c.workers)


def correct_layers_step(c: Conversion) -> None:
    o = c.options
    c.corrections = correct_layers(c.graph, c.thresholds, c.x, o.neurons, o.corrections, o.batch_size, c.workers)


def spike_step(c: Conversion) -> None:
    c.spiking = spike(c.graph, c.thresholds, c.options.neurons, c.corrections)


def package_step(c: Conversion) -> None:
    o = c.options
    metadata = {
        "output_activations": c.output_activations,
        "head": head_metadata(c.head, c.ann_outputs),
        "calibration": {
            "method": str(o.method),
            "per_channel": o.per_channel and not o.method.per_layer_only,
            "corrections": list(o.corrections),
            "samples": num_samples(c.x),
            "seed": o.neurons.seed,
        },
        "preprocessing": c.calibration.preprocessing.to_dict(),
    }
    snn = package(c.spiking, o.neurons, c.corrections, metadata)
    for layer in snn.layers:
        theta = describe_threshold(snn.thresholds[layer["node"]])
        c.report.mark(layer["node"], "converted", f"IF neuron, threshold {theta}")
    for pool in snn.pools:
        c.report.mark(pool["node"], "converted", "spiking max-pool over the accumulated input")
    snn.conversion_report = c.report.rows()
    snn.metadata["report"] = [row for row in snn.conversion_report if row["fate"] != "kept"]  # the graph shows the rest
    snn.commit_metadata()
    snn.proto.producer_name = c.ann.producer_name or "onnx2snn"
    c.snn = snn


class Step(NamedTuple):
    name: str
    run: Callable[[Conversion], None]


PIPELINE = [
    Step("name every node", name_every_node),
    Step("keep the outputs asked for", keep_the_outputs_asked_for),
    Step("canonicalize", canonicalize),
    Step("move output activations", move_output_activations),
    Step("check", check),
    Step("resolve shapes", resolve_the_shapes),
    Step("share out the calibration data", share_out_the_data),
    Step("calibrate thresholds", calibrate_thresholds),
    Step("correct layers", correct_layers_step),
    Step("spike", spike_step),
    Step("package", package_step),
]
ANALYSIS = PIPELINE[: [s.name for s in PIPELINE].index("check")]  # what analyze runs before reporting


def _is_onnx(model: Any) -> bool:
    return isinstance(model, (onnx.ModelProto, str, os.PathLike))


def _input_model(model: Any, calibration: Dataset) -> onnx.ModelProto:
    """The ANN as ONNX of at least MIN_OPSET: a torch module exported, an old opset upgraded."""
    if _is_onnx(model):
        proto = load_onnx(model)
    elif hasattr(model, "state_dict") and callable(model):  # a torch.nn.Module
        from .export import from_torch

        if isinstance(calibration.x, dict):
            raise ConversionError("a torch module is exported with one input: export it to ONNX first")
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


def convert(
    model: onnx.ModelProto | str | os.PathLike | Any,
    calibration_data: Dataset | Inputs | str | os.PathLike,
    method: str | Method = DEFAULT_METHOD,
    *,
    calibration_workers: Callable[..., Any] | None = None,
    **options: Any,
) -> SNNModel:
    """Convert a ReLU ANN into a spiking network.

    ``model``: an ONNX file, a ModelProto or a ``torch.nn.Module``. ``calibration_data``: an
    array of model-ready inputs (a dict of arrays by input name for a model with several data
    inputs), a Dataset or a data spec. ``method``: ``max``,
    ``percentile:P``, ``mmse``, ``spike-norm`` or ``spike-norm:seed`` (calibration.METHODS).
    Keyword options (``ConvertOptions.make``): ``per_channel``; ``corrections``: any of
    ``bias``, ``potential``; ``timesteps``: the T that mmse, spike-norm and the corrections
    calibrate for, stored in the artifact as its default; ``reset``; ``v_init``; ``encoding``:
    ``direct`` or ``poisson`` (seeded by ``seed``), for every data input or as a dict by input
    name; ``calibration_samples`` (a seeded subset); ``batch_size``; ``outputs``: the model
    outputs to keep (all by default); ``spike_mode``: ``single`` (IF neurons, one spike a step at
    most) or ``multi`` (MultiSpikeIF: as many spikes a step as thresholds crossed).
    ``calibration_workers(graph, inputs, neurons, batch_size)`` gives the workers that hold the
    calibration data in shards (calibration/shards.py; one shard in this process by default;
    ``onnx2snn.convert(..., workers=N)`` shards over Ray)."""
    opts = ConvertOptions.make(method, **options)
    if _is_onnx(model):
        model = load_onnx(model)  # a missing or broken model file is reported before the data
    try:
        calibration = as_dataset(calibration_data).sample(opts.calibration_samples, opts.neurons.seed)
    except DataError as e:
        raise CalibrationError(f"calibration data: {e}") from e
    conversion = Conversion(_input_model(model, calibration), opts, calibration, make_workers=calibration_workers)
    for step in PIPELINE:
        step.run(conversion)
    return conversion.snn


def _mark_refused(report: Report, problems: Sequence[ConversionError]) -> None:
    for problem in problems:
        if problem.node:
            report.mark(problem.node, "refused", str(problem).split(": ", 1)[-1])


def analyze(model: onnx.ModelProto | str | os.PathLike) -> list[dict]:
    """What conversion would do to every node of an ANN, without calibrating: kept, folded,
    removed, converted to IF, or refused and why."""
    conversion = Conversion(load_onnx(model), ConvertOptions.make())
    for step in ANALYSIS:
        step.run(conversion)
    graph, report = conversion.graph, conversion.report
    _mark_refused(report, find_unsupported(graph))
    for node in graph.nodes:
        if node.op in ACTIVATIONS and report.entries.get(node.name, {}).get("fate") == "kept":
            report.mark(node.name, "converted", "IF neuron (threshold set by calibration)")
        if node.op in POOLS:
            report.mark(node.name, "converted", "spiking max-pool where spikes reach it")
    return report.rows()
