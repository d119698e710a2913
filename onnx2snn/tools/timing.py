"""Timing T steps of an SNN against T passes of its ANN (the dense limit): what ``bench`` and
the speed benchmarks measure, with one warm-up and best-of rule."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import onnx2snn


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` timed calls of ``fn``, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_against_dense(
    session: onnx2snn.SNNSession,
    x: np.ndarray | dict[str, np.ndarray],
    steps: int,
    repeat: int,
    providers: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Seconds for ``steps`` steps of ``session`` on ``x``, and for as many passes of its ANN on
    the same ``providers``, each timed as a whole (one pass alone is too noisy): ``snn_seconds``,
    ``images_per_s``, ``ms_per_step``, ``dense_limit_seconds``, ``vs_dense_limit``. The ANN runs
    with and without spinning threads and the faster counts: the dense limit is never flattered
    by a setting chosen for the SNN."""
    model = onnx2snn.to_ann(session.model)
    samples = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    dense_times = []
    for spin in (True, False):
        ann, name = onnx2snn.ann_session(model, providers, samples, spin)
        feeds = x if isinstance(x, dict) else {name: x}

        def dense(ann=ann, feeds=feeds) -> None:
            for _ in range(steps):
                ann.run(None, feeds)

        dense_times.append(best_time(dense, repeat))
    snn_s = best_time(lambda: session.run(x, steps), repeat)
    ann_s = min(dense_times)
    return {
        "snn_seconds": snn_s,
        "images_per_s": samples / snn_s,
        "ms_per_step": 1000 * snn_s / steps,
        "dense_limit_seconds": ann_s,
        "vs_dense_limit": snn_s / ann_s,
    }
