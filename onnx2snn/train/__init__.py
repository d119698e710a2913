"""Training: the torch view of a graph (ANN or SNN), the original research script's weight
quantization with straight-through fine-tuning, and spiking fine-tuning through T steps.

torch is imported only when these functions run (the package works without it)."""

from __future__ import annotations

import os
from typing import Any

import onnx

from ..artifact import SNNModel
from ..data import Dataset, as_dataset
from ..errors import ConfigError
from .options import ANN_DEFAULTS, SNN_DEFAULTS, TrainOptions


def _torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ConfigError("training needs PyTorch: pip install 'onnx2snn[torch]'") from e


def to_torch(model: SNNModel | onnx.ModelProto | str | os.PathLike, canonical: bool = True) -> Any:
    """A ``torch.nn.Module`` whose forward equals onnxruntime's on ``model``.

    An SNN artifact gives a module that steps through T timesteps (``forward(x, timesteps=None,
    per_step=False)``: the decoded output, the head's mean over the steps) with a surrogate
    gradient for the spike; an ANN gives its canonical graph (BatchNorm folded, as conversion
    sees it; ``canonical=False`` keeps the graph as it is) with ``forward(x)``. Either has
    ``to_onnx()`` (the ANN, an ONNX ModelProto) or ``to_snn()`` (the artifact, an SNNModel) to
    write the trained weights, biases and thresholds back exactly."""
    _torch()
    from .jobs import canonical_ann, load_model
    from .spiking import SpikingModule
    from .view import GraphModule

    loaded = load_model(model)
    if isinstance(loaded, SNNModel):
        return SpikingModule(loaded)
    return GraphModule(canonical_ann(loaded) if canonical else loaded)


def prepare(
    model: SNNModel | onnx.ModelProto | str | os.PathLike,
    data: Dataset | str | os.PathLike,
    *,
    weight_bits: int | None = None,
    channel_wise: bool = False,
    timesteps: int | None = None,
    samples: int | None = None,
    device: str = "cpu",
    **options: Any,
) -> Any:
    """A fine-tuning run made ready (``jobs.Job``): every argument checked, the module
    built, the data read. ``finetune`` runs it here; a data-parallel worker makes its own from
    the same arguments (``onnx2snn.distributed``)."""
    _torch()
    from .jobs import load_model, prepare_ann, prepare_snn

    loaded = load_model(model)
    spiking = isinstance(loaded, SNNModel)
    settings = TrainOptions.make(SNN_DEFAULTS if spiking else ANN_DEFAULTS, **options)
    dataset = data if isinstance(data, Dataset) else as_dataset(data)
    common = {"samples": samples, "device": device}
    if spiking:
        return prepare_snn(loaded, dataset, settings, timesteps, weight_bits, channel_wise, **common)
    if timesteps is not None:
        raise ConfigError("timesteps applies to an SNN artifact; this model is an ANN")
    return prepare_ann(loaded, dataset, settings, weight_bits, channel_wise, **common)


def finetune(
    model: SNNModel | onnx.ModelProto | str | os.PathLike,
    data: Dataset | str | os.PathLike,
    *,
    progress: bool = False,
    **arguments: Any,
) -> Any:
    """Fine-tune an ANN or an SNN artifact on labelled ``data``; returns a ``FineTuned``
    (``.model``, ``.log`` per epoch, ``.record``, ``.save(path)``). ``arguments``: those of
    ``prepare`` (``weight_bits``, ``channel_wise``, ``timesteps``, ``samples``, ``device``)
    and TrainOptions fields (``epochs``, ``lr``, ``momentum``, ``weight_decay``,
    ``batch_size``, ``seed``, ...), whose defaults differ for the two (``ANN_DEFAULTS``,
    ``SNN_DEFAULTS``).

    An ANN is canonicalized, its weights quantized to ``weight_bits`` (2-8; per output channel
    with ``channel_wise``) and fine-tuned with the straight-through estimator; it comes back
    with integer weights behind DequantizeLinear. An SNN is trained through ``timesteps`` steps
    (its own T by default) with a surrogate gradient; integer weights stay integer.
    ``samples``: a seeded subset of the data."""
    job = prepare(model, data, **arguments)
    return job.finish(job.run(progress=progress))


__all__ = ["ANN_DEFAULTS", "SNN_DEFAULTS", "TrainOptions", "finetune", "prepare", "to_torch"]
