"""Batches for models whose batch axis may be static: a static batch pads the last chunk."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def chunks(x: np.ndarray, batch_size: int, static_batch: int | None) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (batch, number of real samples in it)."""
    size = static_batch or batch_size
    for start in range(0, len(x), size):
        b = x[start : start + size]
        n = len(b)
        if static_batch and n < static_batch:
            b = np.concatenate([b, np.repeat(b[-1:], static_batch - n, axis=0)])
        yield b, n
