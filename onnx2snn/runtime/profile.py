"""Where the time of a step goes: onnxruntime's own profile of the step model, summed by
operator type."""

from __future__ import annotations

import json
import os
from collections import defaultdict


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
