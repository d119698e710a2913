"""Concrete shapes where ONNX shape inference leaves holes (after Resize, a Reshape with a
computed shape, ...): the ANN runs once on a few samples and every unknown dimension takes the
value it had, except the batch axis, which stays symbolic. Neuron and pool states are sized
from these shapes."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..data import Inputs
from .statistics import stream_activations

PROBE = 3  # samples in the probe batch: a free axis of this size is taken for the batch axis
BATCH = "N"


def resolve_shapes(graph: gs.Graph, sample: Inputs) -> gs.Graph:
    tensors = graph.tensors()
    holes = [
        t
        for t in tensors.values()
        if isinstance(t, gs.Variable) and t.inputs and (t.shape is None or any(not isinstance(d, int) for d in t.shape))
    ]
    if not holes:
        return graph
    static = graph.inputs[0].shape[0] if graph.inputs[0].shape else None
    batch = static if isinstance(static, int) else PROBE
    arrays = sample if isinstance(sample, dict) else {graph.inputs[0].name: sample}
    x = {name: np.resize(a, (batch,) + a.shape[1:]).astype(np.float32) for name, a in arrays.items()}
    values = next(stream_activations(graph, [t.name for t in holes], x, batch, exact=True))
    for t in holes:
        actual = values[t.name].shape
        inferred = list(t.shape) if t.shape is not None and len(t.shape) == len(actual) else [None] * len(actual)
        t.shape = [
            d if isinstance(d, int) else (BATCH if a == batch and not isinstance(static, int) and i == 0 else a)
            for i, (d, a) in enumerate(zip(inferred, actual))
        ]
    return graph
