"""PyTorch front end: export a ``torch.nn.Module`` to ONNX for the user."""

from __future__ import annotations

import io
from typing import Any

import onnx

from .errors import ModelError


def from_torch(
    module: Any,
    example_input: Any,
    *,
    dynamo: bool = False,
    opset: int = 17,
    input_name: str = "input",
    output_name: str = "output",
) -> onnx.ModelProto:
    """Export ``module`` (in eval mode) with a dynamic batch axis. ``dynamo=False`` uses the
    TorchScript exporter, ``True`` the ``torch.export``-based one (needs onnxscript)."""
    try:
        import torch
    except ImportError as e:
        raise ModelError("from_torch needs PyTorch: pip install 'onnx2snn[torch]'") from e
    x = torch.as_tensor(example_input, dtype=torch.float32)
    was_training = module.training
    module.eval()
    try:
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                opset_version=max(opset, 18),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=({0: batch},),
                external_data=False,
            )
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(
            module,
            (x,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        )
        return onnx.load_from_string(buffer.getvalue())
    finally:
        module.train(was_training)
