"""Accuracy at every timestep from one run: the SNN's cumulative decoded output after t steps
is its prediction at t, so a single run of max(T) steps scores every requested T."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from ..artifact import SNNModel, load, load_onnx
from ..data import Dataset, check_input
from ..errors import ConfigError, DataError
from ..passes import snn_to_ann
from .batching import chunks
from .progress import progress_bar
from .providers import ann_session
from .session import SNNSession


def run_ann(
    model: onnx.ModelProto, x: np.ndarray, batch_size: int = 256, providers: str | Sequence[str] | None = None
) -> np.ndarray:
    """The ANN's first output on ``x``, batch by batch."""
    session, _ = ann_session(model, providers, batch_size)
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else None for d in inp.shape]
    x = check_input(x, shape, inp.name)
    outs = [session.run(None, {inp.name: b})[0][:n] for b, n in chunks(x, batch_size, shape[0])]
    return np.concatenate(outs)


def model_inputs(snn: SNNModel, data: Dataset, limit: int | None = None) -> tuple[Dataset, np.ndarray]:
    """The first ``limit`` samples of ``data`` (all by default), and their inputs checked
    against the artifact's input (DataError naming the source when empty or mismatched)."""
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"limit must be positive, got {limit}")
        data = data.head(limit)
    if len(data) == 0:
        raise DataError(f"{data.source}: no samples")
    if snn.sequence_input:  # [N, T, ...]: the session checks every step's slice
        x = np.asarray(data.x, dtype=np.float32)
        if x.ndim != len(snn.input_shape) + 1:
            raise DataError(
                f"{data.source}: shape {list(x.shape)} is not a sequence [N, T, ...] for the model's "
                f"{len(snn.input_shape) - 1}-dimensional input '{snn.input_name}'"
            )
        return data, x
    return data, check_input(data.x, snn.input_shape, snn.input_name, data.source)


def evaluate(
    snn: SNNModel | str | os.PathLike,
    data: Dataset,
    timesteps: Sequence[int],
    ann: onnx.ModelProto | str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    providers: str | Sequence[str] | None = None,
    progress: bool = False,
    encoding: str | None = None,
    seed: int = 0,
    form: str = "auto",
    max_memory: int = 2 << 30,
    threads: int | None = None,
    spin: bool | None = None,
) -> dict[str, Any]:
    """ANN accuracy, and for each T the SNN's accuracy and top-1 agreement with the ANN.

    Returns ``{"ann": {"accuracy"}, "snn": {"<T>": {"accuracy", "agreement", "seconds"}},
    "samples", "provider"}``; accuracies are None without labels. ``ann`` defaults to the
    ANN rebuilt from the artifact (its neurons back to ReLUs). The remaining arguments are
    SNNSession's."""
    steps = sorted({int(t) for t in timesteps})
    if not steps or steps[0] <= 0:
        raise ConfigError(f"timesteps must be positive integers, got {list(timesteps)}")
    snn = snn if isinstance(snn, SNNModel) else load(snn)
    data, x = model_inputs(snn, data, limit)
    # a graph read from NIR (or any sequence-input artifact) has no ANN to compare with
    has_ann = ann is not None or (not snn.sequence_input and snn.metadata.get("source") != "nir")
    if has_ann:
        ann_model = load_onnx(ann) if ann is not None else snn_to_ann(snn)
        ann_pred = run_ann(ann_model, x, batch_size, providers).argmax(axis=-1)

    session = SNNSession(
        snn,
        providers=providers,
        batch_size=batch_size,
        encoding=encoding,
        seed=seed,
        form=form,
        max_memory=max_memory,
        threads=threads,
        spin=spin,
    )
    t_max = steps[-1]
    pred = np.empty((len(steps), len(x)), dtype=np.int64)
    seconds = np.zeros(t_max)
    idx = np.array(steps) - 1
    bar = progress_bar(len(x) * t_max, progress)
    start = time.perf_counter()
    for out in session.iter_run(x, t_max, per_step=True, progress=bar.update):
        n = out.decoded.shape[1]
        pred[:, out.start : out.start + n] = out.decoded[idx].argmax(axis=-1)
        seconds += out.seconds
    bar.close()
    total = time.perf_counter() - start

    labels = data.y
    report: dict[str, Any] = {
        "samples": len(x),
        "method": snn.metadata.get("calibration", {}).get("method"),
        "encoding": session.encoding,
        "form": session.form,
        "provider": session.provider,
        "ann": {"accuracy": None if labels is None or not has_ann else float((ann_pred == labels).mean())},
        "snn": {},
        "seconds": total,
    }
    for row, t in enumerate(steps):
        report["snn"][str(t)] = {
            "accuracy": None if labels is None else float((pred[row] == labels).mean()),
            "agreement": float((pred[row] == ann_pred).mean()) if has_ann else None,
            "seconds": float(seconds[t - 1]),
        }
    return report
