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

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..artifact import SNNModel, is_artifact, load_onnx
from ..data import Dataset, Preprocessing, load_data
from ..errors import ConfigError, Onnx2SnnError
from ..train import prepare
from .cluster import TASK_RETRIES, cluster, where

STATE_FILE = "state.npz"


def _worker(config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker: its job, its share of every batch, worker 0's state back."""
    import ray.train
    import ray.train.torch
    import torch

    proto = onnx.load_from_string(config["model"])
    model = SNNModel(proto) if config["artifact"] else proto
    data = config["data"]
    if isinstance(data, str):  # the worker reads the data itself: nothing large comes from the driver
        data = load_data(data, split="train", preprocessing=Preprocessing.from_dict(config["preprocessing"]))
    job = prepare(model, data, **config["arguments"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    wrapped = None
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(job.module, find_unused_parameters=False)
    log = job.run(rank, world, wrapped)
    for entry in log:
        entry["workers"] = world
    metrics = {"log": log, "rank": rank, **where()}
    if rank == 0:
        with tempfile.TemporaryDirectory() as folder:
            np.savez(Path(folder) / STATE_FILE, *job.state())
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    else:
        ray.train.report(metrics)


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

    spec = str(data) if isinstance(data, (str, os.PathLike)) else None
    dataset = load_data(spec, split="train", preprocessing=preprocessing) if spec else data
    if workers is None and ray_address is None:
        return local_finetune(model, dataset, progress=progress, **arguments)
    proto = model.proto if isinstance(model, SNNModel) else load_onnx(model)
    artifact = isinstance(model, SNNModel) or is_artifact(proto)
    loaded = (model if isinstance(model, SNNModel) else SNNModel(proto)) if artifact else proto
    job = prepare(loaded, dataset, **arguments)  # every argument checked here, before any worker starts
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
    result = job.finish(logs)
    result.record["distributed"] = {"address": info["address"], "workers": info["workers"], "engine": "ray.train"}
    if isinstance(result.model, SNNModel):
        result.model.metadata["training"][-1] = result.record
        result.model.commit_metadata()
    return result


def _train(config: dict[str, Any], workers: int, use_gpu: bool) -> tuple[list[np.ndarray], list[dict]]:
    from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

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
        except Exception as e:  # Ray wraps the worker's error; ours are re-raised as they were
            cause = e
            while cause is not None and not isinstance(cause, Onnx2SnnError):
                cause = cause.__cause__ or getattr(cause, "cause", None)
            if isinstance(cause, Onnx2SnnError):
                raise cause from e
            raise ConfigError(f"distributed fine-tuning failed: {str(e).splitlines()[0]}") from e
        checkpoint: Checkpoint | None = result.checkpoint
        if checkpoint is None:
            raise ConfigError("distributed fine-tuning failed: worker 0 sent no trained parameters")
        with checkpoint.as_directory() as folder, np.load(Path(folder) / STATE_FILE) as saved:
            state = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        return state, result.metrics["log"]
    finally:
        shutil.rmtree(storage, ignore_errors=True)
