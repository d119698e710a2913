"""onnxruntime behind onnx2snn's errors: a model it cannot load or run is a ModelError naming
the model and onnxruntime's reason (its first line); session options are checked, each by its
name, before any model is read."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError, ModelError
from ..limits import as_int

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

FORMS = ("auto", "step", "unrolled")


def _errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's exception types (Fail, InvalidArgument, InvalidGraph, ...)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(
        t for t in vars(state).values() if isinstance(t, type) and issubclass(t, Exception) and t is not Exception
    )


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text.replace("[ONNXRuntimeError] : ", "")[:240]


@contextlib.contextmanager
def onnxruntime_errors(what: str, doing: str = "running it") -> Iterator[None]:
    """Turn onnxruntime's exceptions inside the block into a ModelError about ``what``."""
    try:
        yield
    except _errors() as e:
        raise ModelError(f"{what}: onnxruntime failed {doing} ({_reason(e)})") from e


def inference_session(
    model: onnx.ModelProto,
    options: ort.SessionOptions | None,
    providers: Sequence[str],
    what: str = "model",
) -> ort.InferenceSession:
    """An onnxruntime session of ``model``, or a ModelError naming ``what`` and the reason."""
    import onnxruntime as ort

    options = options or ort.SessionOptions()
    options.log_severity_level = 4  # its errors come as exceptions (below), not as lines on stderr
    with onnxruntime_errors(what, "loading it"):
        return ort.InferenceSession(model.SerializeToString(), options, providers=list(providers))


def check_session_options(
    batch_size: object, form: object, max_memory: object, threads: object, seed: object
) -> tuple[int, int, int | None, int]:
    """SNNSession's numeric options as ints, and its form checked, or a ConfigError naming the
    one at fault."""
    if form not in FORMS:
        raise ConfigError(f"form must be one of {', '.join(FORMS)}, got {form!r}", option="form")
    if isinstance(max_memory, numbers.Real) and not isinstance(max_memory, (bool, numbers.Integral)):
        max_memory = int(max_memory) if math.isfinite(max_memory) else max_memory  # 2e9 bytes is fine
    return (
        as_int(batch_size, "batch_size"),
        as_int(max_memory, "max_memory"),
        None if threads is None else as_int(threads, "threads"),
        as_int(seed, "seed", minimum=0),
    )
