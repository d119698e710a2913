"""Decoding the non-spiking head: the prediction after t steps is the mean of the head's
outputs over steps 1..t (the accumulated membrane of a non-spiking output layer), with a
trailing Softmax/LogSoftmax applied to that mean."""

from __future__ import annotations

import numpy as np


def apply_activation(mean: np.ndarray, activation: dict | None) -> np.ndarray:
    if not activation:
        return mean
    axis = activation.get("axis", -1)
    shifted = mean - mean.max(axis=axis, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    if activation["op"] == "LogSoftmax":
        return shifted - log_z
    return np.exp(shifted - log_z)
