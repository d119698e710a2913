"""Accuracy at every timestep from one run: the SNN's cumulative decoded output after t steps
is its prediction at t, so a single run of max(T) steps scores every requested T."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import onnx

from ..artifact import SNNModel, load, load_onnx
from ..data import Dataset, as_dataset, check_input
from ..errors import ConfigError, DataError
from ..limits import as_int, as_timesteps
from ..passes import snn_to_ann
from .batching import chunks
from .engine import onnxruntime_errors
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
    with onnxruntime_errors("the ANN"):
        outs = [session.run(None, {inp.name: b})[0][:n] for b, n in chunks(x, batch_size, shape[0])]
    return np.concatenate(outs)


def model_inputs(snn: SNNModel, data: Dataset, limit: int | None = None) -> tuple[Dataset, np.ndarray]:
    """The first ``limit`` samples of ``data`` (all by default), and their inputs checked
    against the artifact's input (DataError naming the source when empty or mismatched)."""
    if isinstance(data, np.ndarray):
        data = as_dataset(data)
    if not isinstance(data, Dataset):
        raise DataError(f"expected a Dataset or an array of inputs, got a {type(data).__name__}")
    if limit is not None:
        data = data.head(as_int(limit, "limit"))
    if len(data) == 0:
        raise DataError(f"{data.source}: no samples")
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
    if isinstance(timesteps, (str, bytes)) or not isinstance(timesteps, Iterable):
        raise ConfigError(f"timesteps must be a list of integers, got {timesteps!r}", option="timesteps")
    steps = sorted({as_timesteps(t) for t in timesteps})
    if not steps:
        raise ConfigError("timesteps must name at least one T, got none", option="timesteps")
    snn = snn if isinstance(snn, SNNModel) else load(snn)
    data, x = model_inputs(snn, data, limit)
    ann_model = load_onnx(ann) if ann is not None else snn_to_ann(snn)
    ann_pred = run_ann(ann_model, x, batch_size, providers).argmax(axis=-1)
    labels = data.y

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
    correct = np.zeros(len(steps), dtype=np.int64)  # counts per T: memory does not grow with the data
    agree = np.zeros(len(steps), dtype=np.int64)
    seconds = np.zeros(t_max)
    bar = progress_bar(len(x) * t_max, progress)
    start = time.perf_counter()
    for out in session.iter_run(x, t_max, keep=steps, progress=bar.update):
        n = out.decoded.shape[1]
        pred = out.decoded.argmax(axis=-1)  # [len(steps), n]
        agree += (pred == ann_pred[out.start : out.start + n]).sum(axis=1)
        if labels is not None:
            correct += (pred == labels[out.start : out.start + n]).sum(axis=1)
        seconds += out.seconds
    bar.close()
    total = time.perf_counter() - start

    report: dict[str, Any] = {
        "samples": len(x),
        "method": snn.metadata["calibration"]["method"],
        "encoding": session.encoding,
        "form": session.form,
        "provider": session.provider,
        "ann": {"accuracy": None if labels is None else float((ann_pred == labels).mean())},
        "snn": {},
        "seconds": total,
    }
    for row, t in enumerate(steps):
        report["snn"][str(t)] = {
            "accuracy": None if labels is None else float(correct[row] / len(x)),
            "agreement": float(agree[row] / len(x)),
            "seconds": float(seconds[t - 1]),
        }
    return report
