"""Evaluation sharded over Ray workers: each worker loads its own shard of the data spec, runs
its own session and returns only counts (runtime.evaluate.count_correct), which add up to
exactly the counts of one process over the whole data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import onnx

from ..artifact import SNNModel, load
from ..data import Dataset, Preprocessing, load_data, num_samples, take
from ..errors import ConfigError
from ..runtime.evaluate import (
    check_timesteps,
    count_correct,
    merge_counts,
    model_inputs,
    reference_ann,
    report_counts,
)
from ..runtime.evaluate import evaluate as local_evaluate
from .cluster import Shard, cluster, run_shards, where


def _shard_counts(
    shard: Shard,
    snn_bytes: bytes,
    ann_bytes: bytes,
    data: str | Dataset,
    preprocessing: dict | None,
    limit: int | None,
    steps: list[int],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Runs in a worker: its shard of the data, its own session, the counts back."""
    snn = SNNModel(onnx.load_from_string(snn_bytes))
    ann = onnx.load_from_string(ann_bytes) if ann_bytes else None  # none for a graph read from NIR
    if isinstance(data, str):  # the worker reads the data itself: nothing large comes from the driver
        data = load_data(data, preprocessing=Preprocessing.from_dict(preprocessing))
    data, x = model_inputs(snn, data, limit)
    start, stop = shard.bounds(num_samples(x), options.get("batch_size", 256))
    if start >= stop:  # more workers than batches
        return {"samples": 0, "shard": shard.index}
    labels = None if data.y is None else data.y[start:stop]
    counts = count_correct(snn, ann, take(x, slice(start, stop)), labels, steps, options, offset=start)
    return {**counts, "shard": shard.index, "start": start, "stop": stop, **where()}


def evaluate(
    snn: SNNModel | str | os.PathLike,
    data: str | Dataset,
    timesteps: Sequence[int],
    ann: onnx.ModelProto | str | os.PathLike | None = None,
    limit: int | None = None,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    preprocessing: Preprocessing | None = None,
    progress: bool = False,
    **session_options: Any,
) -> dict[str, Any]:
    """ANN accuracy, and for each T the SNN's accuracy and top-1 agreement with the ANN
    (``runtime.evaluate``). ``data``: a Dataset or a data spec (read with ``preprocessing``,
    the artifact's by default). With ``workers`` or ``ray_address`` the work is sharded over a
    Ray cluster (the one at ``ray_address``, or a local one of ``workers`` processes): each
    worker reads its own shard of a data spec (a Dataset's arrays go through Ray's object
    store), and the report, identical to one process's, adds ``"distributed"``: the address,
    the number of workers and where each shard ran. More keyword arguments are SNNSession's."""
    snn = snn if isinstance(snn, SNNModel) else load(snn)
    prep = preprocessing or Preprocessing.from_dict(snn.metadata.get("preprocessing"))
    if not isinstance(data, (str, os.PathLike, Dataset)):
        raise ConfigError(f"evaluate takes a data spec or a Dataset, not a {type(data).__name__}")
    if workers is None and ray_address is None:
        dataset = data if isinstance(data, Dataset) else load_data(data, preprocessing=prep)
        return local_evaluate(snn, dataset, timesteps, ann, limit, progress=progress, **session_options)
    steps = check_timesteps(timesteps)
    ann_model = reference_ann(snn, ann)
    data = str(data) if not isinstance(data, Dataset) else data
    with cluster(ray_address, workers) as info:
        shards = [Shard(i, info["workers"]) for i in range(info["workers"])]
        args = (
            snn.proto.SerializeToString(),
            ann_model.SerializeToString() if ann_model is not None else b"",
            data,
            prep.to_dict(),
            limit,
            steps,
            session_options,
        )
        parts = run_shards(_shard_counts, shards, args, progress)
    parts = [p for p in parts if p["samples"]]
    report = report_counts(snn, steps, merge_counts(parts))
    report["distributed"] = {
        "address": info["address"],
        "workers": len(shards),
        "shards": [{k: p[k] for k in ("shard", "start", "stop", "node", "pid", "gpus", "seconds")} for p in parts],
    }
    return report
