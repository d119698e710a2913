"""Fine-tuning data-parallel over Ray Train (its TorchTrainer: PyTorch DDP, gloo on CPU, NCCL
where the workers have GPUs).

Every worker makes the same job from the same arguments (train.prepare: the model, the options,
its own reading of the data spec) and trains its contiguous share of every global batch; DDP
averages the gradients. Each share's loss is its sum over the global batch times the number of
workers, so the average is the global batch's mean loss whatever the shares' sizes, and the
epoch's loss and accuracy are summed over the workers: the same loss curve as one process for
the same global batch and seed, within float noise. Worker 0 sends back the trained parameters
only; the driver writes them into the model as one process would."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..artifact import SNNModel
from ..data import Dataset, Preprocessing, load_data
from ..errors import CalibrationError, ConfigError, ConversionError, DataError, ModelError, Onnx2SnnError
from ..train import prepare
from .cluster import TASK_RETRIES, cluster, where

STATE_FILE = "state.npz"  # worker 0's trained parameters, in the module's order
LOG_FILE = "log.json"  # the per-epoch log (summed over the workers)
ERROR_FILE = "error.json"  # or the onnx2snn error every worker met: [class name, message]


def _worker(config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker: its job, its share of every batch, worker 0's state back."""
    import ray.train
    import ray.train.torch
    import torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    try:
        proto = onnx.load_from_string(config["model"])
        model = SNNModel(proto) if config["artifact"] else proto
        data = config["data"]
        if isinstance(data, str):  # the worker reads the data itself: nothing large comes from the driver
            data = load_data(data, split="train", preprocessing=Preprocessing.from_dict(config["preprocessing"]))
        job = prepare(model, data, **config["arguments"])
        wrapped = None
        if world > 1:  # the buffers are constants (integer weights, shapes): nothing to broadcast
            wrapped = torch.nn.parallel.DistributedDataParallel(job.module, broadcast_buffers=False)
        log = job.run(rank, world, wrapped)
    except Onnx2SnnError as e:  # every worker meets it (same data, collective checks): no retry, typed
        _report(rank, {ERROR_FILE: json.dumps([type(e).__name__, str(e)])})
        return
    for entry in log:
        entry["workers"] = world
    _report(rank, {LOG_FILE: json.dumps(log)}, job.state())


def _report(rank: int, texts: dict[str, str], state: list[np.ndarray] | None = None) -> None:
    """Worker 0's files back to the driver (as a Ray Train checkpoint); the others report their rank."""
    import ray.train

    if rank != 0:
        ray.train.report({"rank": rank})
        return
    with tempfile.TemporaryDirectory() as folder:
        for name, text in texts.items():
            (Path(folder) / name).write_text(text)
        if state is not None:
            np.savez(Path(folder) / STATE_FILE, *state)
        ray.train.report({"rank": rank, **where()}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _typed(name: str, message: str) -> Onnx2SnnError:
    """The onnx2snn error a worker met, made again here."""
    kinds = {k.__name__: k for k in (ConfigError, ConversionError, DataError, ModelError, CalibrationError)}
    return kinds.get(name, ConfigError)(message)


def _absolute(spec: str) -> str:
    """A data spec whose file or folder is named relative to here, named absolutely: Ray Train
    workers run in folders of their own."""
    if os.path.exists(spec):
        return os.path.abspath(spec)
    parts = spec.split(":")
    if len(parts) >= 2 and parts[1] and os.path.exists(parts[1]):
        parts[1] = os.path.abspath(parts[1])
    return ":".join(parts)


def finetune(
    model: SNNModel | onnx.ModelProto | str | os.PathLike,
    data: Dataset | str | os.PathLike,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    preprocessing: Preprocessing | None = None,
    progress: bool = False,
    **arguments: Any,
) -> Any:
    """Fine-tune an ANN or an SNN artifact (``onnx2snn.train.finetune``; its arguments). With
    ``workers`` or ``ray_address`` the training is data-parallel over a Ray cluster (the one at
    ``ray_address``, or a local one of ``workers`` processes) through Ray Train's TorchTrainer:
    each worker reads the data spec itself (a Dataset's arrays go through Ray's object store)
    and trains its share of every global batch; a worker that dies restarts the run (up to
    TASK_RETRIES times). The record adds ``distributed``: the address and number of workers."""
    from ..train import finetune as local_finetune

    spec = _absolute(str(data)) if isinstance(data, (str, os.PathLike)) else None
    dataset = load_data(spec, split="train", preprocessing=preprocessing) if spec else data
    if workers is None and ray_address is None:
        return local_finetune(model, dataset, progress=progress, **arguments)
    job = prepare(model, dataset, **arguments)  # every argument checked here, before any worker starts
    artifact = isinstance(job.model, SNNModel)
    proto = job.model.proto if artifact else job.model
    config = {
        "model": proto.SerializeToString(),
        "artifact": artifact,
        "data": spec or dataset,
        "preprocessing": dataset.preprocessing.to_dict() if isinstance(dataset, Dataset) else None,
        "arguments": arguments,
    }
    with cluster(ray_address, workers) as info:
        state, logs = _train(config, info["workers"], arguments.get("device", "cpu") == "cuda")
    job.load_state(state)
    return job.finish(
        logs, {"distributed": {"address": info["address"], "workers": info["workers"], "engine": "ray.train"}}
    )


def _train(config: dict[str, Any], workers: int, use_gpu: bool) -> tuple[list[np.ndarray], list[dict]]:
    try:
        from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as e:
        raise ConfigError("distributed fine-tuning needs Ray Train: pip install 'onnx2snn[ray]'") from e

    storage = tempfile.mkdtemp(prefix="onnx2snn-train-")
    trainer = TorchTrainer(
        _worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name="finetune",
            storage_path=storage,
            failure_config=FailureConfig(max_failures=TASK_RETRIES),
        ),
    )
    try:
        try:
            result = trainer.fit()
        except Exception as e:  # a worker process died more often than retried, or Ray failed
            failures = getattr(e, "worker_failures", None) or {}
            first = next(iter(failures.values()), None)
            detail = str(first or e).strip().splitlines()
            raise ConfigError(f"distributed fine-tuning failed: {detail[-1] if detail else type(e).__name__}") from e
        checkpoint: Checkpoint | None = result.checkpoint
        if checkpoint is None:
            raise ConfigError("distributed fine-tuning failed: worker 0 sent no trained parameters")
        with checkpoint.as_directory() as folder:
            if (Path(folder) / ERROR_FILE).exists():
                raise _typed(*json.loads((Path(folder) / ERROR_FILE).read_text()))
            with np.load(Path(folder) / STATE_FILE) as saved:
                state = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            return state, json.loads((Path(folder) / LOG_FILE).read_text())
    finally:
        shutil.rmtree(storage, ignore_errors=True)
