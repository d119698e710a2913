"""What a run needs in memory, estimated from the artifact before it starts, and the batch
size that keeps it under a budget (``max_memory``) -- or a refusal with the figure.

Per sample of a batch (float32 throughout):
- step form: the states twice (two buffers that swap every step) and about four more
  state-sized tensors a step computes (input currents, spikes, pooled values), plus the input;
- unrolled form: ``unrolled.batch_for_budget``'s estimate, which grows with T;
- either form: the decoded outputs it keeps (every step's with ``per_step``, else the last).
A run that returns every step's outputs also holds them for all samples at once (T x N x
outputs): that part does not shrink with the batch."""

from __future__ import annotations

import numpy as np
import onnx

from ..artifact import SNNModel
from ..checks import DECODED
from ..errors import ConfigError
from ..limits import available_memory, format_bytes

FLOAT = 4  # bytes
STEP_WORKING_SETS = 6  # the states twice, and four more state-sized tensors a step computes


def per_sample(value: onnx.ValueInfoProto) -> int:
    """Elements per sample of a graph input/output (a free dimension past the batch counts 1)."""
    dims = value.type.tensor_type.shape.dim[1:]
    return int(np.prod([d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims]))


def state_elements(snn: SNNModel) -> int:
    """Elements of every state (membranes, pool states) of one sample."""
    states = {s.input for s in snn.states()}
    return sum(per_sample(v) for v in snn.proto.graph.input if v.name in states)


def output_elements(snn: SNNModel, name: str) -> int:
    """Elements of the output ``name`` for one sample (of a trailing head's output: those of
    the graph outputs it is decoded from)."""
    head = snn.head
    if head and name in head["outputs"]:
        return sum(output_elements(snn, source[: -len(DECODED)]) for source in head["inputs"])
    return next((per_sample(v) for v in snn.proto.graph.output if v.name == name), 1)


def input_elements(snn: SNNModel) -> int:
    """Elements of every data input of one sample."""
    return sum(int(np.prod([d or 1 for d in i["shape"][1:]])) for i in snn.inputs)


def sample_bytes(snn: SNNModel, form: str, timesteps: int, kept: int, head: str) -> int:
    """Bytes one sample of a batch needs in ``form`` at T = ``timesteps``, keeping ``kept``
    decoded steps of output ``head``."""
    outputs = FLOAT * output_elements(snn, head) * (kept + 2)  # kept steps, and the running sum (float64)
    if form == "unrolled":
        from .unrolled import unrolled_bytes_per_sample

        return unrolled_bytes_per_sample(snn, timesteps) + outputs
    return FLOAT * (STEP_WORKING_SETS * state_elements(snn) + 2 * input_elements(snn)) + outputs


def batch_for(
    snn: SNNModel,
    form: str,
    timesteps: int,
    batch_size: int,
    budget: int,
    kept: int = 1,
    head: str | None = None,
    reserve: int = 0,
) -> int:
    """The largest batch up to ``batch_size`` whose run fits ``budget`` bytes besides
    ``reserve`` (outputs held for every sample); 0 when not even one sample fits."""
    one = sample_bytes(snn, form, timesteps, kept, head or snn.outputs[0])
    room = budget - reserve
    static = snn.input_shape[0] if snn.input_shape else None
    if isinstance(static, int):  # a fixed batch: all of it or nothing
        return static if static * one <= room else 0
    return int(max(0, min(batch_size, room // one)))


def plan(
    snn: SNNModel,
    form: str,
    fallback: str | None,
    timesteps: int,
    batch_size: int,
    max_memory: int,
    kept: int,
    head: str,
    reserve: int = 0,
) -> tuple[str, int]:
    """The form and batch size of a run: ``form`` (else ``fallback``, when given) with the
    largest batch up to ``batch_size`` that fits both ``max_memory`` and what this process can
    still get, with ``reserve`` bytes held besides; or a ConfigError with the figures."""
    left = available_memory()
    budget = max_memory if left is None else min(max_memory, left)
    size = batch_for(snn, form, timesteps, batch_size, budget, kept, head, reserve)
    if size == 0 and fallback:
        form, size = fallback, batch_for(snn, fallback, timesteps, batch_size, budget, kept, head, reserve)
    if size == 0:
        raise refuse(snn, form, timesteps, max_memory, kept, reserve, left)
    return form, size


def refuse(
    snn: SNNModel, form: str, timesteps: int, budget: int, kept: int, reserve: int = 0, left: int | None = None
) -> ConfigError:
    """Why a run of ``form`` at ``timesteps`` does not fit ``budget`` (or the ``left`` bytes
    the process can still get), with what changes it."""
    one = sample_bytes(snn, form, timesteps, kept, snn.outputs[0])
    static = snn.input_shape[0] if snn.input_shape else None
    batch = static if isinstance(static, int) else 1
    what = f"{batch} sample{'s' if batch > 1 else ''} of the {form} form at T={timesteps:,} need{'s' * (batch == 1)}"
    what += f" about {format_bytes(batch * one)}"
    limit = f"the memory budget of {format_bytes(budget)} (max_memory, --max-memory)"
    change = ["raise the budget"]
    if left is not None and left < budget:
        limit, change = f"the {format_bytes(left)} this process can still get", []
    if reserve * 10 >= min(budget, left or budget):  # the outputs held for every sample matter
        what += f", and the outputs kept for every sample {format_bytes(reserve)}"
        change.append("keep fewer steps' outputs (per_step, --per-step) or fewer samples (--limit)")
    if batch * one * 10 >= min(budget, left or budget):
        change.append("lower T (--timesteps)" + (" or use the step form (--form step)" if form == "unrolled" else ""))
    return ConfigError(f"{what}: over {limit}; {', '.join(change)}", option="max_memory")
