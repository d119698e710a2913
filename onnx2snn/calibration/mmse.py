"""MMSE thresholds (Li et al., ICML 2021, "A Free Lunch From ANN", sec. 4.1): the threshold
among candidates ``max * (1 - 0.01 i)``, i = 0..99, that minimizes the squared error between an
ANN activation ``a`` and its T-step rate-coded value

    q_T(a) = theta / T * clip(floor(a T / theta + v_init), 0, T)

(the spike count of an IF neuron with reset by subtraction, initial membrane v_init*theta and
constant input ``a``), per layer or per channel. The error is computed on the activation
histogram, so it streams like every other statistic."""

from __future__ import annotations

import numpy as np

from .statistics import Histograms

CANDIDATES = 100
STEP = 0.01


def mmse_thresholds(hist: Histograms, name: str, timesteps: int, v_init: float) -> np.ndarray:
    """Per row (layer or channel) of ``hist``: the candidate threshold of least error. Only the
    bins that hold values count, so the work follows the data, not rows x bins."""
    counts = hist.counts[name]  # [rows, bins]
    top = hist.maxima[name]  # [rows]
    rows, bins = np.nonzero(counts)
    weight = counts[rows, bins].astype(np.float64)
    a = hist.centers(name)[rows, bins]
    top_of = top[rows]
    best = top.astype(np.float64).copy()
    best_error = np.full(len(top), np.inf)
    for i in range(CANDIDATES):
        theta = np.where(top > 0, top * (1.0 - STEP * i), 1.0)
        t = theta[rows] if len(rows) else top_of
        q = t / timesteps * np.clip(np.floor(a * timesteps / t + v_init), 0, timesteps)
        error = np.bincount(rows, weights=weight * (a - q) ** 2, minlength=len(top))
        better = error < best_error
        best = np.where(better, theta, best)
        best_error = np.where(better, error, best_error)
    return np.where(top > 0, best, 0.0)
