"""ANNs at opsets 13 and 14 (the oldest the converter takes without upgrading) convert end to
end: the artifact passes ONNX's full checker at the model's own opset, a bare onnxruntime runs
it, and the session and the unrolled form agree with the ANN."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnx2snn
from onnx2snn.graph import default_opset
from onnx2snn.neuron import body_nodes
from tests.helpers import run_onnx


@pytest.fixture(scope="module")
def digits_net(digits):
    """A small CNN (Conv, BatchNorm, ReLU, MaxPool, Flatten, Gemm), briefly trained on digits."""
    import torch
    from torch import nn

    x, y, _, _ = digits
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 16, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(5):
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[i : i + 64]), yt[i : i + 64]).backward()
            opt.step()
    return net.eval()


def export(net, example, opset: int) -> onnx.ModelProto:
    import io

    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.tensor(example),),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("opset", [13, 14])
def test_an_old_opset_converts_and_runs_everywhere(digits_net, digits, opset):
    x_cal, _, x_test, _ = digits
    ann = export(digits_net, x_cal[:1], opset)
    assert default_opset(ann) == opset
    snn = onnx2snn.convert(ann, x_cal[:200], timesteps=16)
    assert default_opset(snn.proto) == opset
    onnx.checker.check_model(snn.proto, full_check=True)  # CastLike (opset 15) would fail here
    x = x_test[:64]
    # a bare onnxruntime runs the artifact's own IF function: one step from the initial states
    feeds = {snn.input_name: x}
    for state in snn.states():
        value = next(v for v in snn.proto.graph.input if v.name == state.input)
        dims = [len(x) if not d.dim_value else d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[state.input] = np.broadcast_to(state.initial, dims).astype(np.float32)
    first = run_onnx(snn.proto, feeds)[0]
    np.testing.assert_allclose(first, onnx2snn.SNNSession(snn, form="step").run(x, 1), rtol=1e-5, atol=1e-5)
    # the session and the unrolled form agree, and converge to the ANN
    step = onnx2snn.SNNSession(snn, form="step").run(x, 64)
    unrolled = onnx2snn.SNNSession(snn, form="unrolled").run(x, 64)
    np.testing.assert_allclose(unrolled, step, atol=1e-5)
    onnx.checker.check_model(onnx2snn.unroll(snn, 8), full_check=True)
    agreement = (step.argmax(-1) == run_onnx(ann, {"input": x})[0].argmax(-1)).mean()
    assert agreement >= 0.95


def test_the_generic_body_uses_cast_below_opset_15():
    ops = {opset: [n.op_type for n in body_nodes(None, opset)] for opset in (13, 14, 15, 17)}
    assert "CastLike" not in ops[13] + ops[14] and ops[13].count("Cast") == 2
    assert ops[15].count("CastLike") == 2 and ops[17] == ops[15]
