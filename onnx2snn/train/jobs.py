"""The two fine-tuning pipelines, ONNX in and ONNX out.

- An ANN: canonicalized (BatchNorm folded into the weights, as conversion does), its weights
  quantized to B bits with the straight-through estimator and the network fine-tuned with them
  (the original research script's quantize-and-finetune step before Spike-Norm); written back
  with integer weights behind DequantizeLinear. Without ``weight_bits`` it is plain fine-tuning.
- An SNN artifact: backpropagation through its T steps with a surrogate gradient for the spike
  (spiking.py), from the converted network (hybrid conversion, Rathi et al. 2020), training
  weights, biases, thresholds and the corrections' terms for the T it is run at; the artifact
  then defaults to that T. Integer weights stay integer (their own bits, re-quantized every batch).

Both record what was done: an SNN in its metadata's ``training`` list, an ANN under the
``onnx2snn.finetune`` metadata key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch

from ..artifact import SNNModel, is_artifact, load_onnx
from ..data import Dataset, check_input
from ..errors import ConfigError, ConversionError, DataError
from ..graph import MIN_OPSET, default_opset, export_model, import_graph
from ..passes import canonicalize
from ..version import __version__
from .loop import fit
from .options import TrainOptions
from .quantize import check_bits
from .spiking import SpikingModule
from .view import GraphModule, default_quantization

ANN_METADATA_KEY = "onnx2snn.finetune"
OUTPUT_ACTIVATIONS = ("Softmax", "LogSoftmax")


@dataclass
class FineTuned:
    """The fine-tuned model (an ONNX ANN, or an SNN artifact), its per-epoch log and the record
    stored in its metadata."""

    model: onnx.ModelProto | SNNModel
    log: list[dict] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    def save(self, path) -> Any:
        from ..files import save_onnx

        return self.model.save(path) if isinstance(self.model, SNNModel) else save_onnx(self.model, path)


def torch_device(device: str) -> torch.device:
    """``cpu`` or ``cuda`` (only where torch sees a CUDA device)."""
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: torch sees no CUDA device on this machine (its build or the driver)")
    return torch.device(device)


def canonical_ann(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ANN as conversion sees it: named nodes, shapes, constants folded, Dropout and
    Identity gone, BatchNorm folded, MatMul + Add as Gemm (passes.CANONICALIZE)."""
    if default_opset(model) < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:
            raise ConversionError(f"opset {default_opset(model)} model could not be upgraded: {e}") from e
    out = export_model(canonicalize(import_graph(model)), model.opset_import)
    out.producer_name = model.producer_name or "onnx2snn"
    out.metadata_props.extend(model.metadata_props)
    return out


def _labelled(data: Dataset, samples: int | None, seed: int) -> Dataset:
    if data.y is None:
        raise DataError(f"{data.source}: fine-tuning needs labels, and this data set has none")
    if samples is not None and samples <= 0:
        raise ConfigError(f"samples must be positive, got {samples}")
    data = data.sample(samples, seed)
    if len(data) == 0:
        raise DataError(f"{data.source}: no samples")
    return data


def _head(module: GraphModule) -> str:
    """The tensor the loss reads: the first output, or the input of its trailing Softmax."""
    out = module.output_names[0]
    producer = next((n for n in module.nodes if any(t.name == out for t in n.outputs)), None)
    if producer is not None and producer.op in OUTPUT_ACTIVATIONS:
        return producer.inputs[0].name
    return out


def _record(kind: str, data: Dataset, options: TrainOptions, log: list[dict], **more) -> dict:
    return {
        "kind": kind,
        "data": data.source,
        "samples": len(data),
        **options.to_dict(),
        **more,
        "final_loss": log[-1]["loss"] if log else None,
        "final_accuracy": log[-1]["accuracy"] if log else None,
        "seconds": round(sum(e["seconds"] for e in log), 1),
        "onnx2snn": __version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _check(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"the fine-tuned model fails the ONNX checker: {str(e).splitlines()[0]}") from e


@dataclass
class Job:
    """One fine-tuning run made ready: the module, its inputs and labels, how ``fit`` drives
    it, and ``finish(log)`` that writes the trained module back into ONNX. A data-parallel
    worker makes the same job from the same arguments and runs its share (``run(rank, world)``)."""

    module: torch.nn.Module
    x: np.ndarray
    y: np.ndarray
    options: TrainOptions
    groups: list[tuple[list[torch.nn.Parameter], float, float]]
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
    finish: Callable[..., FineTuned]  # (log, extra record fields) -> the written model
    model: onnx.ModelProto | SNNModel  # what it starts from (an ANN, or an artifact)
    device: str = "cpu"
    after_step: Callable[[], None] | None = None

    def run(self, rank: int = 0, world: int = 1, wrapped: torch.nn.Module | None = None, progress: bool = False):
        """The per-epoch log of training (``wrapped``: the module inside DistributedDataParallel)."""
        return fit(
            self.module if wrapped is None else wrapped,
            self.x,
            self.y,
            self.options,
            self.groups,
            device=self.device,
            rank=rank,
            world=world,
            after_step=self.after_step,
            progress=progress,
            forward=self.forward,
        )

    def state(self) -> list[np.ndarray]:
        """The trained parameters, in order (what a worker sends back)."""
        return [p.detach().cpu().numpy() for p in self.module.parameters()]

    def load_state(self, state: list[np.ndarray]) -> None:
        with torch.no_grad():
            for p, value in zip(self.module.parameters(), state, strict=True):
                p.copy_(torch.from_numpy(value))


def prepare_ann(
    model: onnx.ModelProto,
    data: Dataset,
    options: TrainOptions,
    weight_bits: int | None = None,
    channel_wise: bool = False,
    samples: int | None = None,
    device: str = "cpu",
) -> Job:
    """Quantize (with ``weight_bits``) and fine-tune an ANN; see the module docstring."""
    dev = torch_device(device)
    bits = None if weight_bits is None else check_bits(weight_bits)
    data = _labelled(data, samples, options.seed)
    canonical = canonical_ann(model)
    specs = default_quantization(canonical, bits, channel_wise) if bits else None
    module = GraphModule(canonical, quantize=specs).to(dev)
    if not module.param_index:
        raise ConversionError("the model has no weights to train (no Conv, ConvTranspose, Gemm or MatMul)")
    source = module.proto.graph.input[0]
    shape = [d.dim_value if d.HasField("dim_value") else None for d in source.type.tensor_type.shape.dim]
    x = check_input(data.x, shape, module.input_names[0], data.source)
    head = _head(module)

    def finish(log: list[dict], extra: dict | None = None) -> FineTuned:
        out = module.cpu().to_onnx(int4=True if bits is not None and bits <= 4 else None)
        quantization = {"weight_bits": bits, "channel_wise": bool(channel_wise)} if bits else {}
        record = _record("ann", data, options, log, **quantization, preprocessing=data.preprocessing.to_dict())
        record.update(extra or {})
        history = next((json.loads(p.value) for p in out.metadata_props if p.key == ANN_METADATA_KEY), [])
        kept = [p for p in out.metadata_props if p.key != ANN_METADATA_KEY]
        del out.metadata_props[:]
        out.metadata_props.extend(kept)
        entry = onnx.StringStringEntryProto(key=ANN_METADATA_KEY, value=json.dumps(history + [record]))
        out.metadata_props.append(entry)
        _check(out)
        return FineTuned(out, log, record)

    return Job(
        module,
        x,
        data.y,
        options,
        [(list(module.params), 1.0, options.weight_decay)],
        lambda m, batch: m(batch, outputs=[head])[0],
        finish,
        model,
        str(dev),
    )


def prepare_snn(
    snn: SNNModel,
    data: Dataset,
    options: TrainOptions,
    timesteps: int | None = None,
    weight_bits: int | None = None,
    channel_wise: bool = False,
    samples: int | None = None,
    device: str = "cpu",
) -> Job:
    """Spiking fine-tuning of an artifact at ``timesteps`` (its own T by default); see the
    module docstring."""
    dev = torch_device(device)
    steps = snn.timesteps if timesteps is None else timesteps
    if not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ConfigError(f"timesteps must be a positive integer, got {steps}")
    bits = None if weight_bits is None else check_bits(weight_bits)
    data = _labelled(data, samples, options.seed)
    specs = default_quantization(snn.proto, bits, channel_wise) if bits else None
    module = SpikingModule(snn, quantize=specs).to(dev)
    x = check_input(data.x, snn.input_shape, snn.input_name, data.source)
    weights, neuron = module.parameter_groups()

    def finish(log: list[dict], extra: dict | None = None) -> FineTuned:
        quantization = {"weight_bits": bits, "channel_wise": bool(channel_wise)} if bits else {}
        stored = sorted({s.bits for s in module.view.quantize.values()})
        record = _record(
            "spiking", data, options, log, timesteps=int(steps), **quantization, integer_weight_bits=stored
        )
        record.update(extra or {})
        history = list(snn.metadata.get("training", []))
        out = module.cpu().to_snn({"timesteps": int(steps), "training": history + [record]})
        _check(out.proto)
        return FineTuned(out, log, record)

    return Job(
        module,
        x,
        data.y,
        options,
        [(weights, 1.0, options.weight_decay), (neuron, options.neuron_lr_scale, 0.0)],
        lambda m, batch: m(batch, steps),
        finish,
        snn,
        str(dev),
        module.constrain,
    )


def load_model(model) -> onnx.ModelProto | SNNModel:
    """An SNNModel for an artifact, else the ONNX ANN."""
    if isinstance(model, SNNModel):
        return model
    proto = load_onnx(model)
    if is_artifact(proto):
        return SNNModel(proto, source=None if isinstance(model, onnx.ModelProto) else str(model))
    return proto
