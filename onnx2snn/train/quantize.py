"""Weight quantization with a straight-through estimator, as the original research script did it
before Spike-Norm: per layer, or per output channel,

    alpha = max|w| / (2^(B-1) - 1)        w_q = round(w / alpha) * alpha

recomputed from the float shadow weights before every batch; the gradient with respect to w_q
is applied to the shadow weights unchanged (straight-through estimator; Bengio et al. 2013).

Written back into ONNX the weights stay integer: ``DequantizeLinear(q, alpha)`` on an integer
initializer, INT4 where the model's opset allows it (21 and later; onnxruntime runs it for Conv,
Gemm and MatMul, see tests/train/test_quantize.py) and INT8 otherwise. ``w_q`` in torch is the
float32 product ``q * alpha`` that DequantizeLinear computes, so the two agree exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

MIN_BITS, MAX_BITS = 2, 8
INT4_OPSET = 21  # the first opset whose DequantizeLinear takes INT4


@dataclass(frozen=True)
class QuantSpec:
    """How one weight is quantized: ``bits``, and the axis of its per-channel scale (None: one
    scale for the whole tensor)."""

    bits: int
    axis: int | None = None

    def __post_init__(self) -> None:
        check_bits(self.bits)

    @property
    def levels(self) -> int:
        """The largest integer magnitude, 2^(B-1) - 1."""
        return 2 ** (self.bits - 1) - 1


def check_bits(bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"weight bits must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits}")
    return int(bits)


def scale_of(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """alpha, shaped to broadcast against ``w`` (a dead channel gets 1: its weights are all 0)."""
    magnitude = w.detach().abs()
    if spec.axis is None:
        top = magnitude.max()
    else:
        dims = [d for d in range(w.dim()) if d != spec.axis]
        top = magnitude.amax(dim=dims, keepdim=True) if dims else magnitude
    alpha = top / spec.levels
    return torch.where(alpha > 0, alpha, torch.ones_like(alpha))


def integers(w: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, alpha): the integer weights (as floats) and their scale."""
    alpha = scale_of(w, spec)
    q = torch.clamp(torch.round(w.detach() / alpha), -spec.levels, spec.levels)
    return q, alpha


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        return quantized

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def fake_quantize(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """w_q = q * alpha in the forward pass (exactly DequantizeLinear's float32 product), the
    identity in the backward pass."""
    q, alpha = integers(w, spec)
    return _StraightThrough.apply(w, q * alpha)


def stored_bits(q: np.ndarray, storage_bits: int) -> int:
    """The bit width a symmetric integer weight was quantized to: the smallest B with
    max|q| <= 2^(B-1) - 1 (the quantizer maps each scale's largest weight to exactly that)."""
    top = int(np.abs(q.astype(np.int64)).max()) if q.size else 0
    bits = max(MIN_BITS, int(np.ceil(np.log2(top + 1))) + 1)
    return min(bits, storage_bits)


def output_axis(op: str, attrs: dict, rank: int, index: int = 1) -> int:
    """The axis of a weight (input ``index`` of the layer) that indexes the layer's output
    channels: its per-channel scale runs along it."""
    if op == "Conv":
        return 0
    if op == "ConvTranspose":
        return 1
    if op == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return rank - 1 if index == 1 else max(rank - 2, 0)  # MatMul: x @ W[.., in, out], or W[.., out, in] @ x
