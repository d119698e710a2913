"""The conversion pipeline, in the order of a paper's method section."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx

from . import __version__
from .artifact import FORMAT, SNNModel, attach_neuron, load_onnx
from .data import Dataset, as_dataset, check_input, iter_batches
from .errors import CalibrationError, ConfigError, ConversionError, DataError
from .graph import MIN_OPSET, default_opset, export_model, import_graph
from .neuron import DEFAULT_V_INIT, RESET_MODES
from .passes import (
    CANONICALIZE,
    activation_nodes,
    calibrate,
    check_supported,
    output_activations,
    parse_method,
    relu_to_if,
    state_names,
    strip_output_activation,
)
from .passes.check_supported import clip_max

DEFAULT_METHOD = "max"
DEFAULT_TIMESTEPS = 32


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


def _shape(tensor) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in (tensor.shape or [])]


def convert(
    model: onnx.ModelProto | str | os.PathLike | Any,
    calibration_data: Dataset | np.ndarray | str | os.PathLike,
    method: str = DEFAULT_METHOD,
    *,
    per_channel: bool = False,
    timesteps: int = DEFAULT_TIMESTEPS,
    reset: str = "subtract",
    v_init: float = DEFAULT_V_INIT,
    calibration_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
) -> SNNModel:
    """Convert a ReLU ANN into a spiking network.

    ``model`` is an ONNX file, a ModelProto or a ``torch.nn.Module``; ``calibration_data``
    an array of model-ready inputs, a Dataset or a data spec; ``method`` ``max`` or
    ``percentile:P``; ``timesteps`` the default T stored in the artifact."""
    if timesteps <= 0:
        raise ConfigError(f"timesteps must be positive, got {timesteps}")
    if reset not in RESET_MODES:
        raise ConfigError(f"reset must be one of {', '.join(RESET_MODES)}, got {reset!r}")
    if not 0.0 <= v_init < 1.0:
        raise ConfigError(f"v_init must lie in [0, 1), got {v_init}")
    if calibration_samples is not None and calibration_samples <= 0:
        raise ConfigError(f"calibration_samples must be positive, got {calibration_samples}")
    parse_method(method)
    if _is_onnx(model):
        model = load_onnx(model)  # a missing or broken model file is reported before the data
    try:
        calibration = as_dataset(calibration_data).sample(calibration_samples, seed)
    except DataError as e:
        raise CalibrationError(f"calibration data: {e}") from e

    ann = _input_model(model, calibration)
    graph = import_graph(ann)
    for rewrite in CANONICALIZE:
        graph = rewrite(graph)
    activations = output_activations(graph)
    graph = strip_output_activation(graph)
    graph = check_supported(graph)

    data_input = graph.inputs[0]
    x = check_input(calibration.x, _shape(data_input), data_input.name, calibration.source)
    static_batch = _shape(data_input)[0]

    def batches():
        size = static_batch or batch_size
        for b in iter_batches(x, size):
            if static_batch and len(b) < static_batch:  # a static batch axis: pad the last batch
                b = np.concatenate([b, np.repeat(b[-1:], static_batch - len(b), axis=0)])
            yield b

    thresholds = calibrate(graph, batches, method, per_channel)
    layers = []
    for node in activation_nodes(graph):
        membrane, membrane_next, threshold = state_names(node.name)
        layers.append(
            {
                "node": node.name,
                "op": node.op,
                "clip_max": clip_max(node) if node.op == "Clip" else None,
                "membrane": membrane,
                "membrane_next": membrane_next,
                "threshold": threshold,
            }
        )
    output_names = [t.name for t in graph.outputs]
    graph = relu_to_if(graph, thresholds, reset=reset, v_init=v_init)
    graph.cleanup().toposort()

    metadata = {
        "format": FORMAT,
        "version": __version__,
        "input": {"name": data_input.name, "shape": _shape(data_input)},
        "outputs": output_names,
        "output_activations": activations,
        "decode": "mean",
        "encoding": "direct",
        "timesteps": int(timesteps),
        "reset": reset,
        "v_init": float(v_init),
        "calibration": {
            "method": str(parse_method(method)),
            "per_channel": bool(per_channel),
            "samples": len(x),
            "seed": seed,
        },
        "layers": layers,
        "preprocessing": calibration.preprocessing.to_dict(),
    }
    proto = attach_neuron(export_model(graph, like=ann), metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"the converted model fails the ONNX checker: {str(e).splitlines()[0]}") from e
    return SNNModel(proto)
