"""SNNSession: drives a step-form artifact for T timesteps in onnxruntime."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ..artifact import SNNModel, load
from ..data import check_input
from ..errors import ConfigError, DataError
from ..neuron import ENCODINGS
from .batching import chunks
from .decode import apply_activation
from .forms import specialize_neuron, split_time_invariant
from .progress import progress_bar
from .providers import device_of, resolve_providers, session_options
from .unrolled import unrollable

FORMS = ("auto", "step", "unrolled")
DEFAULT_MAX_MEMORY = 2 << 30  # bytes, for the unrolled form
# on CPU, batches up to this size run faster unrolled (benchmarks/results/speed.md, batch 1;
# 4 and 16 measured side by side): per-step session calls dominate small batches
SMALL_BATCH = 16


@dataclass
class StepOutputs:
    """Decoded outputs of one batch: ``decoded[t]`` is the prediction after ``t+1`` steps
    (only the last step unless per_step), ``seconds[t]`` the time spent up to that step."""

    start: int
    decoded: np.ndarray  # [steps, n, ...] (steps = T when per_step, else 1)
    seconds: np.ndarray  # [T]


def _session(model, providers: list[str], options: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), options, providers=providers)


class SNNSession:
    """Runs an SNN artifact. ``providers``: None picks TensorRT, CUDA, then CPU by what works;
    ``provider`` says which one the session really uses. ``encoding`` overrides the artifact's
    input encoding (``direct`` or ``poisson``, the latter seeded by ``seed``). ``profile`` records
    onnxruntime's per-node times of the step model (``profile()``). ``form``: ``step`` (one
    ``run`` a step), ``unrolled`` (all steps in one ``run``, batches split to stay under
    ``max_memory`` bytes) or ``auto``: unrolled on GPUs and, on CPU, for batches of at most
    ``SMALL_BATCH`` samples (where one run per step costs more than the work in it); step
    otherwise, and wherever the unrolled form cannot run (Poisson input, a fixed batch).
    ``threads``: onnxruntime's intra-op threads; ``spin``: whether they spin between operators
    (None: only for batches of at most ``providers.SPIN_MAX_BATCH``). ``record``: more tensors
    of the step model that ``iter_steps`` returns every step (the step form only)."""

    def __init__(
        self,
        model: SNNModel | str | os.PathLike,
        providers: str | Sequence[str] | None = None,
        batch_size: int = 256,
        threads: int | None = None,
        encoding: str | None = None,
        seed: int = 0,
        profile: bool = False,
        form: str = "auto",
        max_memory: int = DEFAULT_MAX_MEMORY,
        spin: bool | None = None,
        record: Sequence[str] = (),
    ):
        self.model = model if isinstance(model, SNNModel) else load(model)
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        meta = self.model.metadata
        self.encoding = encoding or self.model.encoding
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        self.seed = seed
        self._layers = self.model.layers
        self._outputs = list(self.model.outputs)
        self._activations = meta.get("output_activations", {})
        self._states = self.model.states()
        varying = [state.input for state in self._states]
        self.sequence = self.model.sequence_input  # a new input every step: x is [N, T, ...]
        if self.encoding == "poisson" or self.sequence:
            varying.append(self.model.input_name)
        self._record = list(record)
        split = split_time_invariant(specialize_neuron(self.model.proto), varying, self._outputs + self._record)
        chosen = resolve_providers(providers)
        # a network truncated before its first neuron (as calibration builds them) has no step part
        self._options = functools.partial(session_options, batch_size, threads, spin)
        # profiles go to the temporary folder, never the user's working directory
        profiled = self._options(os.path.join(tempfile.gettempdir(), "onnx2snn_profile") if profile else None)
        self._step = _session(split.step, chosen, profiled) if split.step.graph.node else None
        self._prefix = _session(split.prefix, chosen, self._options()) if split.prefix is not None else None
        self._boundary = split.boundary
        self._constant = split.constant_outputs
        self.provider: str = (self._step or self._prefix).get_providers()[0]
        self._device = device_of(self.provider)
        if form not in FORMS:
            raise ConfigError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        if form == "auto":
            can_unroll = self.encoding == "direct" and self.static_batch is None and unrollable(self.model)
            form = "unrolled" if can_unroll and (self._device == "cuda" or batch_size <= SMALL_BATCH) else "step"
        if form == "unrolled" and self.encoding != "direct":
            raise ConfigError("the unrolled form needs direct encoding")
        self.form = form
        self._profiling = profile and form == "step" and self._step is not None
        if profile and not self._profiling and self._step is not None:  # only the step form is profiled
            os.remove(self._step.end_profiling())  # no stray profile file left behind
        self.max_memory = max_memory
        self._providers = chosen
        self._unrolled: dict[int, ort.InferenceSession] = {}
        step_inputs = {i.name: i.shape for i in self._step.get_inputs()} if self._step else {}
        self._state_shapes = [step_inputs[state.input] for state in self._states]
        step_outputs = self._step.get_outputs() if self._step else []
        self._read = [o.name for o in step_outputs if o.name in self._outputs or o.name in self._record]

    def profile(self) -> list[dict]:
        """Time of the step model by operator type since the session began (``profile=True``)."""
        from .profile import summarize

        if not self._profiling:
            return []
        self._profiling = False
        return summarize(self._step.end_profiling())

    @property
    def static_batch(self) -> int | None:
        return self.model.input_shape[0] if self.model.input_shape else None

    def _ortvalue(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._device, 0)

    def _initial_states(self, n: int) -> list[np.ndarray]:
        states = []
        for shape, state in zip(self._state_shapes, self._states):
            dims = tuple(n if not isinstance(d, int) else d for d in shape)
            if isinstance(shape[0], int) and shape[0] != n:
                raise ConfigError(f"model has a static batch of {shape[0]}, got {n} samples")
            # a fresh buffer: the run writes into it (a view of the initial value would overwrite it)
            states.append(np.array(np.broadcast_to(state.initial, dims), dtype=np.float32, copy=True))
        return states

    def _steps(self, x: np.ndarray, timesteps: int, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """Raw outputs of each step for one batch."""
        name = self.model.input_name
        poisson = self.encoding == "poisson"
        if poisson and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"Poisson encoding needs inputs scaled to [0, 1]; got values in [{x.min():.3g}, {x.max():.3g}]"
            )
        feeds = {} if poisson or self.sequence else {name: x}
        constant = {}
        if self._prefix is not None:
            names = [o.name for o in self._prefix.get_outputs()]
            results = dict(zip(names, self._prefix.run(names, feeds)))
            feeds.update(results)
            constant = {n: results[n] for n in self._constant}
        if self._step is None:
            for _ in range(timesteps):
                yield dict(constant)
            return
        # two bindings, states ping-ponging between two buffers: no copies between steps
        states = [self._ortvalue(s) for s in self._initial_states(len(x))]
        spare = [self._ortvalue(np.empty_like(s)) for s in self._initial_states(len(x))]
        bindings = []
        for src, dst in ((states, spare), (spare, states)):
            io = self._step.io_binding()
            for boundary in self._boundary:
                io.bind_ortvalue_input(boundary, self._ortvalue(feeds[boundary]))
            for state, a, b in zip(self._states, src, dst):
                io.bind_ortvalue_input(state.input, a)
                io.bind_ortvalue_output(state.output, b)
            for out in self._read:
                io.bind_output(out, self._device)
            bindings.append(io)
        first = len(self._states)
        for t in range(timesteps):
            io = bindings[t % 2]
            if poisson:  # a fresh Bernoulli spike train, P(spike) = input intensity
                io.bind_ortvalue_input(name, self._ortvalue((rng.random(x.shape) < x).astype(np.float32)))
            elif self.sequence:  # the sequence's step t (kept alive while the step runs)
                step_input = np.ascontiguousarray(x[:, t])
                io.bind_ortvalue_input(name, self._ortvalue(step_input))
            self._step.run_with_iobinding(io)
            values = dict(zip(self._read, (v.numpy() for v in io.get_outputs()[first:])))
            values.update(constant)
            yield values

    def _check(self, x: np.ndarray, timesteps: int | None) -> tuple[np.ndarray, int]:
        if self.sequence:
            return self._check_sequence(x, timesteps)
        timesteps = self.model.timesteps if timesteps is None else timesteps
        if not isinstance(timesteps, (int, np.integer)) or timesteps <= 0:
            raise ConfigError(f"timesteps must be a positive integer, got {timesteps}")
        return check_input(x, self.model.input_shape, self.model.input_name), int(timesteps)

    def _check_sequence(self, x: np.ndarray, timesteps: int | None) -> tuple[np.ndarray, int]:
        """A sequence input [N, T, ...]: each step's slice checked as the model's input; T steps
        unless fewer are asked for."""
        name, shape = self.model.input_name, self.model.input_shape
        x = np.asarray(x)
        if x.ndim != len(shape) + 1:
            dims = ", ".join(str(d or "?") for d in shape[1:])
            raise DataError(
                f"input '{name}' takes a sequence [N, T, {dims}] (one input a step), got an array of shape "
                f"{list(x.shape)}"
            )
        available = x.shape[1]
        timesteps = available if timesteps is None else timesteps
        if not isinstance(timesteps, (int, np.integer)) or timesteps <= 0:
            raise ConfigError(f"timesteps must be a positive integer, got {timesteps}")
        if timesteps > available:
            raise ConfigError(f"the input sequence has {available} steps, {timesteps} were asked for")
        steps = [check_input(x[:, t], shape, name) for t in range(int(timesteps))]
        return np.stack(steps, axis=1), int(timesteps)

    def iter_steps(
        self, x: np.ndarray, timesteps: int | None = None
    ) -> Iterator[tuple[int, int, int, dict[str, np.ndarray]]]:
        """Raw per-step values of the outputs: yields (batch start, samples, t, values)."""
        x, timesteps = self._check(x, timesteps)
        rng = np.random.default_rng(self.seed)
        start = 0
        for batch, n in chunks(x, self.batch_size, self.static_batch):
            for t, values in enumerate(self._steps(batch, timesteps, rng)):
                yield start, n, t, {k: v[:n] for k, v in values.items()}
            start += n

    def iter_run(
        self,
        x: np.ndarray,
        timesteps: int | None = None,
        per_step: bool = False,
        progress: Callable[[int], None] | None = None,
        output: str | None = None,
    ) -> Iterator[StepOutputs]:
        """Run ``x`` batch by batch; yields each batch's decoded outputs (see StepOutputs).
        ``progress(n)`` is called after each step of a batch of ``n`` samples. ``output``
        picks which of the model's outputs to decode (the first by default)."""
        x, timesteps = self._check(x, timesteps)
        rng = np.random.default_rng(self.seed)
        head = output or self._outputs[0]
        if head not in self._outputs:
            raise ConfigError(f"no output {head!r}; the model's outputs are {', '.join(self._outputs)}")
        if self.form == "unrolled":
            yield from self._iter_unrolled(x, timesteps, per_step, progress, head)
            return
        activation = self._activations.get(head)
        start = 0
        for batch, n in chunks(x, self.batch_size, self.static_batch):
            total = None
            kept = []
            seconds = np.empty(timesteps)
            began = time.perf_counter()
            for t, values in enumerate(self._steps(batch, timesteps, rng)):
                out = values[head][:n]
                total = out.astype(np.float64) if total is None else total + out
                if per_step or t == timesteps - 1:
                    kept.append(apply_activation(total / (t + 1), activation))
                seconds[t] = time.perf_counter() - began
                if progress:
                    progress(n)
            yield StepOutputs(start, np.stack(kept).astype(np.float32), seconds)
            start += n

    def _iter_unrolled(self, x, timesteps, per_step, progress, head) -> Iterator[StepOutputs]:
        from .unrolled import PER_STEP, batch_for_budget, unroll

        if timesteps not in self._unrolled:
            self._unrolled[timesteps] = _session(unroll(self.model, timesteps), self._providers, self._options())
        session = self._unrolled[timesteps]
        size = min(self.batch_size, batch_for_budget(self.model, timesteps, self.max_memory))
        activation = self._activations.get(head)
        if activation and activation.get("axis", -1) >= 0:  # the outputs gain a leading time axis
            activation = {**activation, "axis": activation["axis"] + 1}
        start = 0
        for batch, n in chunks(x, size, self.static_batch):
            began = time.perf_counter()
            (means,) = session.run([head + PER_STEP], {self.model.input_name: batch})
            elapsed = time.perf_counter() - began
            kept = means[:, :n] if per_step else means[-1:, :n]
            if progress:
                for _ in range(timesteps):
                    progress(n)
            # one run computes every step: its time is spread evenly over them
            seconds = elapsed * np.arange(1, timesteps + 1) / timesteps
            yield StepOutputs(start, apply_activation(kept.astype(np.float64), activation).astype(np.float32), seconds)
            start += n

    def run(
        self,
        x: np.ndarray,
        timesteps: int | None = None,
        per_step: bool = False,
        output: str | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """The decoded output after ``timesteps`` steps, ``[N, ...]``; with ``per_step``
        the decoded output after every step ``t = 1..T``, ``[T, N, ...]``. ``output`` picks
        one of several model outputs (the first by default); ``progress`` shows a bar."""
        steps = timesteps if timesteps is not None else (len(x[0]) if self.sequence else self.model.timesteps)
        bar = progress_bar(len(x) * steps if isinstance(steps, (int, np.integer)) else 0, progress)
        parts = [out.decoded for out in self.iter_run(x, timesteps, per_step, bar.update, output)]
        bar.close()
        decoded = np.concatenate(parts, axis=1)
        return decoded if per_step else decoded[0]
