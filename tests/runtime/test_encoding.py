"""Poisson input encoding: seeded, and its rates converge to the input intensities."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnx2snn
from tests.helpers import const, make_model, tensor


def passthrough():
    """x -> Relu -> Gemm(identity): the output is the mean of the neuron's spikes."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Gemm", ["a", "eye"], ["y"], name="head"),
    ]
    return make_model(nodes, [tensor("x", ["N", 6])], [tensor("y", ["N", 6])], [const("eye", np.eye(6))])


def test_poisson_rates_converge_and_are_seeded():
    x = np.array([[0.0, 0.1, 0.3, 0.5, 0.8, 1.0]] * 50, np.float32)
    snn = onnx2snn.convert(passthrough(), np.ones((4, 6), np.float32), encoding="poisson")  # threshold 1
    assert snn.metadata["encoding"] == "poisson"
    out = onnx2snn.SNNSession(snn, seed=3).run(x, 400)
    np.testing.assert_allclose(out.mean(axis=0), x[0], atol=0.02)
    np.testing.assert_array_equal(out, onnx2snn.SNNSession(snn, seed=3).run(x, 400))
    assert not np.array_equal(out, onnx2snn.SNNSession(snn, seed=4).run(x, 400))
    direct = onnx2snn.SNNSession(snn, encoding="direct").run(x, 400)
    np.testing.assert_allclose(direct[0], x[0], atol=1 / 400 + 1e-6)


def test_poisson_needs_inputs_in_unit_range():
    snn = onnx2snn.convert(passthrough(), np.ones((4, 6), np.float32), encoding="poisson")
    with pytest.raises(onnx2snn.DataError, match="Poisson encoding needs inputs scaled to \\[0, 1\\]"):
        onnx2snn.SNNSession(snn).run(np.full((2, 6), 2.0, np.float32), 4)


def test_poisson_cnn_converges(digits_cnn, digits):
    x_cal, _, x_test, _ = digits
    from tests.helpers import run_onnx

    snn = onnx2snn.convert(digits_cnn, x_cal[:300], "max", encoding="poisson", timesteps=64)
    ann = run_onnx(digits_cnn, {"input": x_test})[0].argmax(1)
    out = onnx2snn.SNNSession(snn).run(x_test, 512)
    assert (out.argmax(1) == ann).mean() >= 0.95
