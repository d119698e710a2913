"""How fast an SNN simulates: T steps timed against T passes of its ANN (the dense limit), and
where the time of a step goes (onnxruntime's own profiler, summed by operator type)."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np


def summarize(profile_file: str) -> list[dict]:
    """[{"op", "microseconds", "share"}] from an onnxruntime profile (its file is removed),
    largest first. Nodes inside the IF function are reported under their own op types."""
    with open(profile_file) as f:
        events = json.load(f)
    os.remove(profile_file)
    total: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            total[event.get("args", {}).get("op_name", "?")] += float(event.get("dur", 0))
    grand = sum(total.values()) or 1.0
    rows = [{"op": op, "microseconds": us, "share": us / grand} for op, us in total.items()]
    return sorted(rows, key=lambda r: -r["microseconds"])


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
    session, x: np.ndarray, steps: int, repeat: int, providers: str | Sequence[str] | None = None
) -> dict:
    """Seconds for ``steps`` steps of ``session`` (an SNNSession) on ``x``, and for as many
    passes of its ANN on the same ``providers``, each timed as a whole (one pass alone is too
    noisy): ``snn_seconds``, ``images_per_s``, ``ms_per_step``, ``dense_limit_seconds``,
    ``vs_dense_limit``. The ANN runs with and without spinning threads and the faster counts:
    the dense limit is never flattered by a setting chosen for the SNN."""
    from .evaluate import ann_session

    model = session.model.to_ann()
    dense_times = []
    for spin in (True, False):
        ann, name = ann_session(model, providers, len(x), spin)

        def dense(ann=ann, name=name) -> None:
            for _ in range(steps):
                ann.run(None, {name: x})

        dense_times.append(best_time(dense, repeat))
    snn_s = best_time(lambda: session.run(x, steps), repeat)
    ann_s = min(dense_times)
    return {
        "snn_seconds": snn_s,
        "images_per_s": len(x) / snn_s,
        "ms_per_step": 1000 * snn_s / steps,
        "dense_limit_seconds": ann_s,
        "vs_dense_limit": snn_s / ann_s,
    }
