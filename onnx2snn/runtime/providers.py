"""Execution providers: TensorRT, then CUDA, then CPU, by what actually works here.

onnxruntime-gpu lists the GPU providers as available even on a machine without a GPU or
without the CUDA libraries, and then falls back to CPU silently; so each is probed once with a
tiny model, and sessions report the provider they really got."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

from ..errors import ConfigError

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ALIASES = {"tensorrt": PREFERENCE[0], "trt": PREFERENCE[0], "cuda": PREFERENCE[1], "cpu": PREFERENCE[2]}


def short_name(provider: str) -> str:
    return {v: k for k, v in ALIASES.items() if k != "trt"}.get(provider, provider)


@functools.cache
def _works(provider: str) -> bool:
    import onnx
    import onnxruntime as ort
    from onnx import helper

    if provider == "CPUExecutionProvider":
        return True
    if provider not in ort.get_available_providers():
        return False
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    severity = ort.get_default_logger_severity() if hasattr(ort, "get_default_logger_severity") else 2
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            session = ort.InferenceSession(model.SerializeToString(), options, providers=[provider])
        return session.get_providers()[0] == provider
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(severity)


def usable_providers() -> list[str]:
    """The providers that work on this machine, best first."""
    return [p for p in PREFERENCE if _works(p)]


def resolve_providers(requested: str | Sequence[str] | None = None) -> list[str]:
    """Providers for a session: the best usable ones by default, or the user's choice
    (short names ``tensorrt``, ``cuda``, ``cpu`` or onnxruntime's names); CPU always last."""
    if requested is None:
        return usable_providers()
    names = [requested] if isinstance(requested, str) else list(requested)
    chosen = []
    for name in names:
        full = ALIASES.get(name.lower(), name)
        if full not in PREFERENCE:
            raise ConfigError(f"unknown execution provider {name!r}: use tensorrt, cuda or cpu", option="providers")
        if not _works(full):
            raise ConfigError(
                f"execution provider {short_name(full)} does not work on this machine", option="providers"
            )
        chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


# onnxruntime's worker threads spin between operators by default. On the 2-core CPU of
# benchmarks/speed.py that cost the step form 10-50% at batches of 16 and 64 (the many small
# elementwise operators of the neurons leave the spinning thread fighting the main one for a
# core) and helped only at batch 1 (measured side by side, both forms and the ANN).
SPIN_MAX_BATCH = 4


def session_options(
    batch_size: int,
    threads: int | None = None,
    spin: bool | None = None,
    profile_prefix: str | None = None,
    optimize: bool = True,
) -> ort.SessionOptions:
    """onnxruntime options for sessions running batches of ``batch_size``: ``threads``
    intra-op threads (onnxruntime's choice when None), spinning between operators only for
    batches up to SPIN_MAX_BATCH unless ``spin`` says otherwise, profiling into files starting
    with ``profile_prefix`` when given; ``optimize=False`` for a model onnxruntime has
    optimized already (runtime/blocked.py)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    spin = batch_size <= SPIN_MAX_BATCH if spin is None else spin
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    # run DequantizeLinear weights as written (folded once into floats): onnxruntime would otherwise
    # fuse an INT8 weight into its MatMul and quantize the activations too (MatMulNBits)
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def device_of(provider: str) -> str:
    """Where a provider keeps its tensors, for IOBinding: 'cuda' or 'cpu'."""
    return "cuda" if provider in PREFERENCE[:2] else "cpu"


def ann_session(
    model: onnx.ModelProto,
    providers: str | Sequence[str] | None = None,
    batch_size: int = 256,
    spin: bool | None = None,
    threads: int | None = None,
) -> tuple[ort.InferenceSession, str]:
    """An onnxruntime session of an ANN for batches of ``batch_size``, and its input's name."""
    from .engine import inference_session

    options = session_options(batch_size, threads, spin=spin)
    session = inference_session(model, options, resolve_providers(providers), "the ANN")
    return session, session.get_inputs()[0].name
