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
from ..data import Dataset, Inputs, as_dataset, check_inputs, num_samples
from ..errors import ConfigError, DataError
from ..limits import as_int, as_timesteps
from ..passes import snn_to_ann
from .engine import onnxruntime_errors
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
    with onnxruntime_errors("the ANN"):
        outs = [session.run(None, b)[0][:n] for b, n in batches(feeds, batch_size, static)]
    return np.concatenate(outs)


def model_inputs(snn: SNNModel, data: Dataset, limit: int | None = None) -> tuple[Dataset, Inputs]:
    """The first ``limit`` samples of ``data`` (all by default), and their inputs checked
    against the artifact's data inputs (DataError naming the source when empty or mismatched):
    an array for a model with one data input, else a dict by input name."""
    if isinstance(data, (np.ndarray, dict)):
        data = as_dataset(data)
    if not isinstance(data, Dataset):
        what = type(data).__name__
        raise DataError(f"expected a Dataset or model inputs (an array, or a dict by input name), got a {what}")
    if limit is not None:
        data = data.head(as_int(limit, "limit"))
    if len(data) == 0:
        raise DataError(f"{data.source}: no samples")
    feeds = model_feeds(snn, data.x, data.source)  # a sequence input: [N, T, ...]
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
    **session_options: Any,
) -> dict[str, Any]:
    """ANN accuracy, and for each T the SNN's accuracy and top-1 agreement with the ANN.

    Returns ``{"ann": {"accuracy"}, "snn": {"<T>": {"accuracy", "agreement", "seconds"}},
    "samples", "provider", ...}``; accuracies are None without labels. ``ann`` defaults to the
    ANN rebuilt from the artifact (its neurons back to ReLUs); a graph read from NIR has none
    (ANN accuracy and agreement None), and its data are sequences [N, T, ...]. More keyword arguments
    (``encoding``, ``seed``, ``form``, ``max_memory``, ``threads``, ``spin``, ``neurons``) are
    SNNSession's."""
    steps = check_timesteps(timesteps)
    snn = snn if isinstance(snn, SNNModel) else load(snn)
    data, x = model_inputs(snn, data, limit)
    ann_model = reference_ann(snn, ann)
    options = {"providers": providers, "batch_size": batch_size, **session_options}
    counts = count_correct(snn, ann_model, x, data.y, steps, options, progress)
    return report_counts(snn, steps, counts)


def reference_ann(snn: SNNModel, ann: onnx.ModelProto | str | os.PathLike | None = None) -> onnx.ModelProto | None:
    """The ANN to agree with: ``ann``, else the one rebuilt from the artifact (its neurons back
    to ReLUs); None for a graph read from NIR (or any sequence-input artifact), which has none."""
    if ann is not None:
        return load_onnx(ann)
    if snn.sequence_input or snn.metadata.get("source") == "nir":
        return None
    return snn_to_ann(snn)


def check_timesteps(timesteps: Sequence[int]) -> list[int]:
    """The distinct T asked for, sorted, each in [1, MAX_TIMESTEPS], or a ConfigError."""
    if isinstance(timesteps, (str, bytes)) or not isinstance(timesteps, Iterable):
        raise ConfigError(f"timesteps must be a list of integers, got {timesteps!r}", option="timesteps")
    steps = sorted({as_timesteps(t) for t in timesteps})
    if not steps:
        raise ConfigError("timesteps must name at least one T, got none", option="timesteps")
    return steps


def count_correct(
    snn: SNNModel,
    ann: onnx.ModelProto | None,
    x: Inputs,
    labels: np.ndarray | None,
    steps: list[int],
    session_options: dict[str, Any],
    progress: bool = False,
    offset: int = 0,
) -> dict[str, Any]:
    """What evaluation counts on ``x`` (samples ``offset`` onwards of the data, which seeds
    Poisson input): samples, ANN correct, and per T the SNN's correct predictions and
    agreements with the ANN, with the simulation time up to each T. Counts of several parts of
    the data add up (``merge_counts``) to exactly those of the whole. Without ``ann`` (a graph
    read from NIR) there is no ANN accuracy nor agreement (None)."""
    batch_size = session_options.get("batch_size", 256)
    ann_pred = None
    if ann is not None:
        ann_pred = run_ann(ann, x, batch_size, session_options.get("providers")).argmax(axis=-1)
    session = SNNSession(snn, **session_options)
    t_max = steps[-1]
    samples = num_samples(x)
    correct = np.zeros(len(steps), dtype=np.int64)  # counts per T: memory does not grow with the data
    agree = np.zeros(len(steps), dtype=np.int64)
    seconds = np.zeros(t_max)
    bar = progress_bar(samples * t_max, progress)
    start = time.perf_counter()
    for out in session.iter_run(x, t_max, keep=steps, progress=bar.update, offset=offset):
        n = out.decoded.shape[1]
        pred = out.decoded.argmax(axis=-1)  # [len(steps), n]: only the T asked for are kept
        if ann_pred is not None:
            agree += (pred == ann_pred[out.start : out.start + n]).sum(axis=1)
        if labels is not None:
            correct += (pred == labels[out.start : out.start + n]).sum(axis=1)
        seconds += out.seconds
    bar.close()
    return {
        "samples": samples,
        "ann_correct": None if labels is None or ann_pred is None else int((ann_pred == labels).sum()),
        "correct": None if labels is None else [int(c) for c in correct],
        "agree": None if ann_pred is None else [int(a) for a in agree],
        "step_seconds": [float(seconds[t - 1]) for t in steps],
        "seconds": time.perf_counter() - start,
        "session": {
            "encoding": session.encoding,
            "form": session.form,
            "neurons": session.neurons,
            "provider": session.provider,
        },
    }


def merge_counts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The counts of several parts of the data as one: sums (times: the slowest part's)."""

    def add(key: str) -> Any:
        values = [p[key] for p in parts]
        if any(v is None for v in values):
            return None
        return sum(values) if not isinstance(values[0], list) else [sum(col) for col in zip(*values)]

    return {
        "samples": add("samples"),
        "ann_correct": add("ann_correct"),
        "correct": add("correct"),
        "agree": add("agree"),
        "step_seconds": [max(col) for col in zip(*(p["step_seconds"] for p in parts))],
        "seconds": max(p["seconds"] for p in parts),
        "session": parts[0]["session"],
    }


def report_counts(snn: SNNModel, steps: list[int], counts: dict[str, Any]) -> dict[str, Any]:
    """The evaluation report from (merged) counts."""
    n = counts["samples"]
    report: dict[str, Any] = {
        "samples": n,
        "method": snn.metadata["calibration"]["method"],
        **counts["session"],
        "ann": {"accuracy": None if counts["ann_correct"] is None else counts["ann_correct"] / n},
        "snn": {},
        "seconds": counts["seconds"],
    }
    for row, t in enumerate(steps):
        report["snn"][str(t)] = {
            "accuracy": None if counts["correct"] is None else counts["correct"][row] / n,
            "agreement": None if counts["agree"] is None else counts["agree"][row] / n,
            "seconds": counts["step_seconds"][row],
        }
    return report
