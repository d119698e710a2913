"""Sums whose result does not depend on how the data was cut: calibration's statistics come from
parts of the data (batches, chunks, and the shards of distributed workers), and floating-point
addition is not associative. Each sample contributes its own partial sum (computed from that
sample's values alone), and the total is the exactly rounded sum of those (``math.fsum``), the
same whatever the order or grouping of the samples."""

from __future__ import annotations

import math

import numpy as np


class ExactSum:
    """A per-row (per-channel) float64 sum over samples; ``add`` takes [samples, rows]."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.count = 0  # values summed per row (samples x positions), for means

    def add(self, per_sample: np.ndarray, positions: int = 1) -> None:
        per_sample = np.asarray(per_sample, np.float64)
        self.parts.append(per_sample.reshape(len(per_sample), -1))
        self.count += len(per_sample) * positions

    def merge(self, other: ExactSum) -> ExactSum:
        self.parts += other.parts
        self.count += other.count
        return self

    def total(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0)
        stacked = np.concatenate(self.parts)
        return np.array([math.fsum(column) for column in stacked.T])

    def mean(self) -> np.ndarray:
        return self.total() / max(self.count, 1)


def channel_sums(a: np.ndarray, per_channel: bool = True) -> tuple[np.ndarray, int]:
    """Per sample, the sum of each channel's (or the layer's) values of ``a`` [n, C, ...], and
    how many values each sum holds."""
    n = len(a)
    rows = a.reshape(n, a.shape[1], -1) if per_channel and a.ndim >= 2 else a.reshape(n, 1, -1)
    return rows.sum(axis=2, dtype=np.float64), rows.shape[2]


def _rows(current: np.ndarray, per_channel: bool) -> np.ndarray:
    """[samples, rows, values]: one row per channel, or one for the whole layer."""
    n = len(current)
    if per_channel and current.ndim >= 2:
        return current.reshape(n, current.shape[1], -1)
    return current.reshape(n, 1, -1)


class Peak:
    """The statistic Spike-Norm sets a threshold from, taken step by step over a layer's input
    current: its maximum per row, or the mean over steps and samples of a percentile per row
    (an exact sum of the per-(step, sample) percentiles)."""

    def __init__(self, per_channel: bool, percentile: float | None):
        self.per_channel, self.percentile = per_channel, percentile
        self.peak: np.ndarray | None = None
        self.sum = ExactSum()

    def add(self, step: np.ndarray) -> None:
        rows = _rows(step, self.per_channel)
        if self.percentile is None:
            m = rows.max(axis=(0, 2))
            self.peak = m if self.peak is None else np.maximum(self.peak, m)
        else:
            self.sum.add(np.percentile(rows, self.percentile, axis=2))

    def merge(self, other: Peak) -> Peak:
        if other.peak is not None:
            self.peak = other.peak if self.peak is None else np.maximum(self.peak, other.peak)
        self.sum.merge(other.sum)
        return self

    def value(self) -> np.ndarray | None:
        """The maximum, or the mean percentile; None where nothing was seen."""
        if self.percentile is None:
            return self.peak
        return self.sum.mean() if self.sum.count else None
