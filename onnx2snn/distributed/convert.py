"""Conversion with its calibration sharded over Ray: the pipeline runs in this process (the
driver), its calibration steps ask Ray actors for their shards' statistics (calibrate.py)."""

from __future__ import annotations

import os
from typing import Any

import onnx

from ..artifact import SNNModel
from ..calibration import Method
from ..convert import DEFAULT_METHOD
from ..convert import convert as local_convert
from ..data import Dataset, Inputs, Preprocessing, load_data
from .calibrate import ray_workers
from .cluster import cluster


def convert(
    model: onnx.ModelProto | str | os.PathLike | Any,
    calibration_data: Dataset | Inputs | str | os.PathLike,
    method: str | Method = DEFAULT_METHOD,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    preprocessing: Preprocessing | None = None,
    **options: Any,
) -> SNNModel:
    """Convert a ReLU ANN into a spiking network (``onnx2snn.convert.convert``; its options).
    With ``workers`` or ``ray_address`` the calibration is sharded over a Ray cluster (the one at
    ``ray_address``, or a local one of ``workers`` processes): each actor reads its own shard of a
    data spec (read with ``preprocessing``), keeps its part of the simulation from one level to
    the next, and returns only statistics that merge exactly, so the artifact equals one
    process's. Its metadata's ``calibration.distributed`` says how many workers ran where."""
    if workers is None and ray_address is None:
        return local_convert(model, calibration_data, method, **options)
    spec = str(calibration_data) if isinstance(calibration_data, (str, os.PathLike)) else None
    data = load_data(spec, split="train", preprocessing=preprocessing) if spec else calibration_data
    prep = data.preprocessing if isinstance(data, Dataset) else preprocessing
    with cluster(ray_address, workers) as info:
        make = ray_workers(spec or data, prep, options.get("calibration_samples"))
        made = []

        def shards(graph, x, neurons, batch_size):
            made.append(make(graph, x, neurons, batch_size, info["workers"]))
            return made[-1]

        snn = local_convert(model, data, method, calibration_workers=shards, **options)
        snn.metadata["calibration"]["distributed"] = {"address": info["address"], **made[0].report()}
    snn.commit_metadata()
    return snn
