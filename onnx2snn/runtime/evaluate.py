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
from ..data import Dataset, Inputs, check_inputs, num_samples
from ..errors import ConfigError, DataError
from ..passes import snn_to_ann
from .inputs import batches, model_feeds
from .progress import progress_bar
from .providers import ann_session
from .session import SNNSession


def run_ann(
    model: onnx.ModelProto, x: Inputs, batch_size: int = 256, providers: str | Sequence[str] | None = None
) -> np.ndarray:
    """The ANN's first output on ``x`` (an array, or a dict by input name), batch by batch."""
    session, _ = ann_session(model, providers, batch_size)
    specs = [(i.name, [d if isinstance(d, int) else None for d in i.shape]) for i in session.get_inputs()]
    feeds = check_inputs(x, specs)
    static = specs[0][1][0] if specs[0][1] else None
    outs = [session.run(None, b)[0][:n] for b, n in batches(feeds, batch_size, static)]
    return np.concatenate(outs)


def model_inputs(snn: SNNModel, data: Dataset, limit: int | None = None) -> tuple[Dataset, Inputs]:
    """The first ``limit`` samples of ``data`` (all by default), and their inputs checked
    against the artifact's data inputs (DataError naming the source when empty or mismatched):
    an array for a model with one data input, else a dict by input name."""
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"limit must be positive, got {limit}")
        data = data.head(limit)
    if len(data) == 0:
        raise DataError(f"{data.source}: no samples")
    feeds = model_feeds(snn, data.x, data.source)
    return data, feeds if len(feeds) > 1 else next(iter(feeds.values()))


def evaluate(
    snn: SNNModel | str | os.PathLike,
    data: Dataset,
    timesteps: Sequence[int],
    ann: onnx.ModelProto | str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    providers: str | Sequence[str] | None = None,
    progress: bool = False,
    encoding: str | dict[str, str] | None = None,
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
    samples = num_samples(x)
    pred = np.empty((len(steps), samples), dtype=np.int64)
    seconds = np.zeros(t_max)
    idx = np.array(steps) - 1
    bar = progress_bar(samples * t_max, progress)
    start = time.perf_counter()
    for out in session.iter_run(x, t_max, per_step=True, progress=bar.update):
        n = out.decoded.shape[1]
        pred[:, out.start : out.start + n] = out.decoded[idx].argmax(axis=-1)
        seconds += out.seconds
    bar.close()
    total = time.perf_counter() - start

    labels = data.y
    report: dict[str, Any] = {
        "samples": samples,
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
            "accuracy": None if labels is None else float((pred[row] == labels).mean()),
            "agreement": float((pred[row] == ann_pred).mean()),
            "seconds": float(seconds[t - 1]),
        }
    return report
