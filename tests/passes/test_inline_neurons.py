"""The inlined IF (standard operators only) is the function's exact arithmetic."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnx2snn.graph import export_model, import_graph
from onnx2snn.neuron import DOMAIN, if_step, initial_membrane
from onnx2snn.passes import inline_neurons
from tests.helpers import run_onnx
from tests.test_neuron import _if_model


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_inlined_neuron_equals_the_reference_bit_for_bit(reset):
    rng = np.random.default_rng(0)
    shape = [3, 4, 2, 2]
    threshold = rng.uniform(0.1, 2.0, (4, 1, 1)).astype(np.float32)
    model = _if_model(shape, threshold, reset, None)
    inlined = export_model(inline_neurons(import_graph(model)), [i for i in model.opset_import if i.domain != DOMAIN])
    onnx.checker.check_model(inlined, full_check=True)
    assert not inlined.functions and {n.op_type for n in inlined.graph.node} <= {
        "Add",
        "Less",
        "Not",
        "Cast",
        "Mul",
        "Sub",
    }
    ref = got = initial_membrane(tuple(shape), threshold, 0.5)
    for step in range(20):
        x = rng.normal(0.3, 1.0, shape).astype(np.float32)
        if step == 3:
            x = threshold - ref  # v lands exactly on the threshold: it fires (v >= theta)
        spikes, got = run_onnx(inlined, {"x": x, "membrane": got})
        ref_spikes, ref = if_step(x, ref, threshold, reset)
        np.testing.assert_array_equal(spikes, ref_spikes)
        np.testing.assert_array_equal(got, ref)
