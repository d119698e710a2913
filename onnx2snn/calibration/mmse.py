"""MMSE thresholds (Li et al., ICML 2021, "A Free Lunch From ANN", sec. 4.1): the threshold
among candidates ``max * (1 - 0.01 i)``, i = 0..99, that minimizes the squared error between an
ANN activation ``a`` and its T-step rate-coded value

    q_T(a) = theta / T * clip(floor(a T / theta + v_init), 0, T)

(the spike count of an IF neuron with reset by subtraction, initial membrane v_init*theta and
constant input ``a``), per layer or per channel. The error is computed on the activation
histogram, so it streams like every other statistic.

``q_T`` is a staircase of T + 1 levels, so a candidate's error needs no pass over the bins:
with running sums of the counts ``w``, ``w a`` and ``w a^2`` over a row's bins, the bins of one
level ``k`` (a run of bins, found by where the staircase steps) add
``S2 - 2 q_k S1 + q_k^2 S0``: (T + 1) lookups per row and candidate instead of one term per
bin (ResNet-50's 22,000 channel rows of 4,096 bins: 145 s before, a few seconds now). The
compiled kernel computes the same thresholds, bit for bit, 7x faster than numpy (runtime/kernel.py,
``mmse``); without it, ``_rows`` does."""

from __future__ import annotations

import numpy as np

from ..runtime import kernel
from .statistics import Histograms

CANDIDATES = 100
STEP = 0.01
# candidate i is the float32 maximum times FACTORS[i], rounded to float32 as numpy rounds float32
# array x Python float
FACTORS = np.array([1.0 - STEP * i for i in range(CANDIDATES)]).astype(np.float32)
# rows at a time: each row's error is its own, and [rows, bins] float64 arrays of the whole
# layer (a 4,096-unit dense layer per unit: 134 MB each, five of them) cost more to allocate and
# stream than the arithmetic on them (a 65 MB MLP's MMSE: 7.3 s whole, 2.3 s by 128 rows)
ROWS = 128
WORKING = 64 << 20  # bytes of the candidate arrays


def mmse_thresholds(hist: Histograms, name: str, timesteps: int, v_init: float) -> np.ndarray:
    """Per row (layer or channel) of ``hist``: the candidate threshold of least error."""
    counts, top32, grid32 = hist.counts[name], hist.maxima[name], hist.tops[name]
    if kernel.available():
        return kernel.mmse(counts, top32, grid32, FACTORS, timesteps, v_init)
    best = np.empty(len(top32))
    # every candidate at once for a few rows: [rows, candidates, T] arrays within WORKING bytes
    step = int(max(1, min(ROWS, WORKING // (64 * CANDIDATES * (timesteps + 2)))))
    for start in range(0, len(top32), step):
        part = slice(start, start + step)
        best[part] = _rows(counts[part], top32[part], grid32[part], timesteps, v_init)
    return best


def _rows(counts: np.ndarray, top32: np.ndarray, grid32: np.ndarray, timesteps: int, v_init: float) -> np.ndarray:
    """mmse_thresholds for some rows: ``counts`` [rows, bins] on the ranges ``grid32`` [rows],
    ``top32`` [rows] their maxima (the candidates are fractions of it).
    Arrays are [rows, candidates, T]; each value is computed as the one-candidate-at-a-time
    formulas computed it (the same thresholds, bit for bit)."""
    counts = counts.astype(np.float64)
    top = top32.astype(np.float64)
    rows, bins = counts.shape
    centers = (np.arange(bins)[None, :] + 0.5) * (grid32[:, None] / bins)  # as Histograms.centers
    width = (grid32[:, None] / bins)[:, 0].astype(np.float64)  # as centers() rounds it
    zero = np.zeros((rows, 1))
    s0 = np.concatenate([zero, np.cumsum(counts, axis=1)], axis=1)  # sums over bins [0, b)
    s1 = np.concatenate([zero, np.cumsum(counts * centers, axis=1)], axis=1)
    s2 = np.concatenate([zero, np.cumsum(counts * centers * centers, axis=1)], axis=1)
    del counts
    index = np.arange(rows)[:, None, None]
    levels = np.arange(1, timesteps + 1, dtype=np.float64)[None, None, :]  # the steps into levels 1..T
    safe = np.where(width > 0, width, 1.0)[:, None, None]
    theta = np.where(top[:, None] > 0, top32[:, None] * FACTORS[None, :], np.float32(1.0)).astype(np.float64)

    def level(b: np.ndarray) -> np.ndarray:
        """The staircase's (unclipped) level of bins ``b`` [rows, candidates, T]."""
        return np.floor(centers[index, b] * timesteps / theta[:, :, None] + v_init)

    # first bin at level >= k, for k = 1..T: a guess from the inverse, then moved onto the exact
    # step of the formula above (floating point can put a bin on either side)
    guess = np.ceil((levels - v_init) * theta[:, :, None] / timesteps / safe - 0.5)
    first = np.clip(guess, 0, bins).astype(np.int64)
    for _ in range(2):
        below = first - 1
        back = (below >= 0) & (level(np.maximum(below, 0)) >= levels)
        first = np.where(back, below, first)
        ahead = (first < bins) & (level(np.minimum(first, bins - 1)) < levels)
        first = np.where(ahead, first + 1, first)
    first = np.maximum.accumulate(first, axis=2)
    shape = (rows, CANDIDATES, 1)
    edges = np.concatenate([np.zeros(shape, np.int64), first, np.full(shape, bins)], axis=2)
    q = theta[:, :, None] / timesteps * np.arange(timesteps + 1)[None, None, :]  # level k's value (T: clipped)
    # each sum at every edge once; a level's part is the difference of its two edges'
    w, wa, wa2 = (np.diff(s[index, edges], axis=2) for s in (s0, s1, s2))
    error = (wa2 - 2.0 * q * wa + q * q * w).sum(axis=2)  # [rows, candidates]
    best = theta[np.arange(rows), np.argmin(error, axis=1)]  # the first of equal errors, as before
    return np.where(top > 0, best, 0.0)
