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
from ..data import Inputs, num_samples
from ..errors import ConfigError
from ..limits import as_int, as_timesteps
from ..neuron import ENCODINGS
from ..passes.move_output_head import DECODED
from .budget import FLOAT, output_elements, plan
from .decode import apply_activation
from .engine import check_session_options, inference_session, onnxruntime_errors
from .forms import drop_outputs, specialize_neuron, split_time_invariant
from .inputs import Encoder, Feeds, batches, input_encodings, model_feeds, sequence_inputs, sequence_steps
from .progress import progress_bar
from .providers import device_of, resolve_providers, session_options
from .unrolled import unrollable

FORMS = ("auto", "step", "unrolled")
NEURONS = ("auto", "compiled", "onnx")  # how the step form computes its IF layers
DEFAULT_MAX_MEMORY = 2 << 30  # bytes, for the unrolled form
# on CPU, batches up to this size run faster unrolled than stepped with ONNX neurons
# (benchmarks/results/speed.md, batch 1; 4 and 16 measured side by side): per-step session
# calls dominate small batches. With compiled neurons the step form runs several steps a call
# (compiled.chunk) and is the faster one: auto takes it wherever the neurons compile.
SMALL_BATCH = 16


@dataclass
class StepOutputs:
    """Decoded outputs of one batch: ``decoded[t]`` is the prediction after ``t+1`` steps
    (only the last step unless per_step), ``seconds[t]`` the time spent up to that step (up
    to the end of the call that computed it)."""

    start: int
    decoded: np.ndarray  # [steps, n, ...] (steps = T when per_step, else 1); a label head's dtype
    seconds: np.ndarray  # [T]


def _session(model, providers: list[str], options: ort.SessionOptions, what: str = "model") -> ort.InferenceSession:
    return inference_session(model, options, providers, what)


class SNNSession:
    """Runs an SNN artifact. ``providers``: None picks TensorRT, CUDA, then CPU by what works;
    ``provider`` says which one the session really uses. ``encoding`` overrides the artifact's
    input encoding (``direct`` or ``poisson``, the latter seeded by ``seed``), for every data
    input or, as a dict, by input name. Inputs are an array, or for a model with several data
    inputs a dict of arrays by input name. ``profile`` records
    onnxruntime's per-node times of the step model (``profile()``). ``form``: ``step`` (one
    ``run`` a step; with compiled neurons small batches run several steps a call, whose
    steps then share the call's time in ``StepOutputs.seconds``), ``unrolled`` (all steps in
    one ``run``, batches split to stay under ``max_memory`` bytes) or ``auto``: unrolled on
    GPUs and, on CPU, for batches of at most ``SMALL_BATCH`` samples unless the compiled
    neurons run several steps a call (where one run per step costs more than the work in
    it); step otherwise, and wherever the unrolled form cannot run (Poisson input, a fixed
    batch).
    ``threads``: onnxruntime's intra-op threads; ``spin``: whether they spin between operators
    (None: only for batches of at most ``providers.SPIN_MAX_BATCH``). ``record``: more tensors
    of the step model that ``iter_steps`` returns every step (the step form only). ``neurons``:
    how the step form computes its IF layers: ``compiled`` (one pass of the compiled kernel per
    layer and step, compiled.py), ``onnx`` (the neuron's ONNX operators in onnxruntime) or
    ``auto``: compiled where the kernel is built, the step form runs on the CPU provider and
    every neuron layer is an IF (the kernel has no MultiSpikeIF, LIF or CubaLIF: those run as
    ONNX operators); ``neurons`` says which one the session uses, and ``layout`` whether the
    compiled neurons work on onnxruntime's blocked channel layout (``blocked``, blocked.py: no
    layout conversions at the neurons) or on plain tensors (``plain``). A sequence input
    ([N, T, ...], inputs.py) feeds its slice ``x[:, t]`` at step t, and a run takes as many
    steps as it holds unless fewer are asked for."""

    def __init__(
        self,
        model: SNNModel | str | os.PathLike,
        providers: str | Sequence[str] | None = None,
        batch_size: int = 256,
        threads: int | None = None,
        encoding: str | dict[str, str] | None = None,
        seed: int = 0,
        profile: bool = False,
        form: str = "auto",
        max_memory: int = DEFAULT_MAX_MEMORY,
        spin: bool | None = None,
        record: Sequence[str] = (),
        neurons: str = "auto",
    ):
        batch_size, max_memory, threads, seed = check_session_options(batch_size, form, max_memory, threads, seed)
        asked = list(encoding.values()) if isinstance(encoding, dict) else [] if encoding is None else [encoding]
        for kind in asked:  # the input names of a dict are checked once the model is read
            if not isinstance(kind, str) or kind not in ENCODINGS:
                raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {kind!r}", option="encoding")
        self.model = model if isinstance(model, SNNModel) else load(model)
        self.batch_size = batch_size
        meta = self.model.metadata
        self.encodings = input_encodings(self.model, encoding)
        kinds = set(self.encodings.values())
        self.encoding = kinds.pop() if len(kinds) == 1 else "mixed"
        self.seed = seed
        self._layers = self.model.layers
        self._outputs = list(self.model.outputs)
        self._activations = meta.get("output_activations", {})
        self._states = self.model.states()
        varying = [state.input for state in self._states]
        self.sequences = sequence_inputs(self.model)  # a new slice every step: [N, T, ...]
        varying += [name for name, e in self.encodings.items() if e == "poisson"] + self.sequences
        self._record = list(record)
        starts = {layer["membrane_init"] for layer in self._layers if layer.get("membrane_init")}
        proto = drop_outputs(specialize_neuron(self.model.proto), starts)  # read once, by states()
        split = split_time_invariant(proto, varying, self._outputs + self._record)
        chosen = resolve_providers(providers)
        # a network truncated before its first neuron (as calibration builds them) has no step part
        self._options = functools.partial(session_options, batch_size, threads, spin)
        # profiles go to the temporary folder, never the user's working directory
        profiled = self._options(os.path.join(tempfile.gettempdir(), "onnx2snn_profile") if profile else None)
        self._what = self.model.source or "model"
        self._step = _session(split.step, chosen, profiled, self._what) if split.step.graph.node else None
        prefix = split.prefix
        self._prefix = _session(prefix, chosen, self._options(), self._what) if prefix is not None else None
        self._boundary = split.boundary
        self._constant = split.constant_outputs
        self.provider: str = (self._step or self._prefix).get_providers()[0]
        self._device = device_of(self.provider)
        self._auto = form == "auto"  # may fall back to the step form where the unrolled one does not fit
        steps_first = False  # auto on CPU: small batches step with compiled neurons where they can
        if form == "auto":
            can_unroll = self.encoding == "direct" and self.static_batch is None and unrollable(self.model)
            form = "unrolled" if can_unroll and (self._device == "cuda" or batch_size <= SMALL_BATCH) else "step"
            if form == "unrolled" and self._device == "cpu" and neurons != "onnx" and not profile:
                form, steps_first = "step", True
        if form == "unrolled" and self.encoding != "direct":
            raise ConfigError("the unrolled form needs direct encoding", option="form")
        self.form = form
        self._profiling = profile and form == "step" and self._step is not None
        if profile and not self._profiling and self._step is not None:  # only the step form is profiled
            os.remove(self._step.end_profiling())  # no stray profile file left behind
        self.max_memory = max_memory
        self._providers = chosen
        self._unrolled: dict[int, ort.InferenceSession] = {}
        self._head: ort.InferenceSession | None = None  # the trailing head, made when first asked for
        step_inputs = {i.name: i.shape for i in self._step.get_inputs()} if self._step else {}
        self._step_inputs = set(step_inputs)
        self._state_shapes = [step_inputs[state.input] for state in self._states]
        step_outputs = self._step.get_outputs() if self._step else []
        self._read = [o.name for o in step_outputs if o.name in self._outputs or o.name in self._record]
        self._compiled = self._compile(neurons, split.step, chosen)
        if steps_first and (self._compiled is None or not self._compiled.chunks):
            # one step a call (a max-pool's state, a tensor without a batch axis): unrolled is faster
            self.form, self._compiled = "unrolled", None
        self.neurons = "compiled" if self._compiled is not None else "onnx"
        # where the compiled neurons meet onnxruntime: its blocked channel layout, or plain NCHW
        self.layout = self._compiled.layout if self._compiled is not None else "plain"

    def _compile(self, neurons: str, step_model, providers: list[str]):
        """The step form's neurons as the compiled kernel (compiled.py), or None for onnxruntime's.
        ``auto`` compiles where it can run: the step form on the CPU provider, not profiled."""
        from .compiled import CompiledSteps, NotCompilable

        if neurons not in NEURONS:
            raise ConfigError(f"neurons must be one of {', '.join(NEURONS)}, got {neurons!r}")
        usable = self.form == "step" and self._step is not None and self._device == "cpu" and not self._profiling
        if neurons == "onnx" or (neurons == "auto" and not usable):
            return None
        if not usable:
            raise ConfigError("compiled neurons run in the step form on the CPU provider, without profiling")
        try:
            return CompiledSteps(
                step_model,
                self.model,
                self._states,
                self._read,
                lambda m, optimize=True: _session(m, providers, self._options(optimize=optimize), self._what),
            )
        except NotCompilable as e:
            if neurons == "compiled":
                raise ConfigError(f"compiled neurons are not available: {e}") from e
            return None

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

    def _steps(self, batch: Feeds, timesteps: int, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """Raw outputs of each step for one batch."""
        encoder = Encoder(self.encodings, batch, rng, self.sequences)
        n = len(next(iter(batch.values())))
        feeds = dict(encoder.constant)
        constant = {}
        if self._prefix is not None:
            names = [o.name for o in self._prefix.get_outputs()]
            wanted = {i.name for i in self._prefix.get_inputs()}  # a truncated network may read fewer inputs
            with onnxruntime_errors(self._what):
                results = dict(zip(names, self._prefix.run(names, {k: v for k, v in feeds.items() if k in wanted})))
            feeds.update(results)
            constant = {n: results[n] for n in self._constant}
        if self._step is None:
            for _ in range(timesteps):
                yield dict(constant)
            return
        if self._compiled is not None:
            per_step = encoder.step if encoder.varies else None  # Poisson spikes, sequences' slices
            with onnxruntime_errors(self._what):  # the stages between the compiled neurons
                for values in self._compiled.steps(feeds, n, timesteps, per_step, self.max_memory):
                    values.update(constant)
                    yield values
            return
        # two bindings, states ping-ponging between two buffers: no copies between steps
        states = [self._ortvalue(s) for s in self._initial_states(n)]
        spare = [self._ortvalue(np.empty_like(s)) for s in self._initial_states(n)]
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
            step_inputs = encoder.step()  # held until the step has run: the bindings read its arrays
            for name, value in step_inputs.items():  # Poisson spikes, a sequence's slice
                if name in self._step_inputs:  # a truncated network may not read every input
                    io.bind_ortvalue_input(name, self._ortvalue(value))
            with onnxruntime_errors(self._what):
                self._step.run_with_iobinding(io)
            values = dict(zip(self._read, (v.numpy() for v in io.get_outputs()[first:])))
            values.update(constant)
            yield values

    def _check(self, x: Inputs, timesteps: int | None) -> tuple[Feeds, int]:
        """The feeds and T of a run: the artifact's T by default; with sequence inputs, as many
        steps as the sequences hold, or fewer where asked."""
        feeds = model_feeds(self.model, x)
        available = sequence_steps(feeds, self.model)
        if available is None:
            return feeds, as_timesteps(self.model.timesteps if timesteps is None else timesteps)
        timesteps = as_timesteps(available if timesteps is None else timesteps)
        if timesteps > available:
            raise ConfigError(
                f"the input sequence has {available} steps, {timesteps} were asked for", option="timesteps"
            )
        return feeds, timesteps

    def _plan(self, form: str, timesteps: int, kept: int, head: str, reserve: int = 0) -> tuple[str, int]:
        """The form and batch size of a run that fits ``max_memory`` with ``reserve`` bytes
        of outputs held besides (runtime/budget.py), or a ConfigError with the figure."""
        fallback = "step" if form == "unrolled" and self._auto else None
        return plan(self.model, form, fallback, timesteps, self.batch_size, self.max_memory, kept, head, reserve)

    def _rng(self, index: int) -> np.random.Generator:
        """The Poisson spike trains of the batch starting at sample ``index`` of the data: seeded
        by (seed, index), so a part of the data run on its own (a shard) draws what it draws in
        the whole, where batches start at the same samples."""
        return np.random.default_rng([self.seed, index])

    def iter_steps(
        self, x: Inputs, timesteps: int | None = None, offset: int = 0
    ) -> Iterator[tuple[int, int, int, dict[str, np.ndarray]]]:
        """Raw per-step values of the outputs: yields (batch start, samples, t, values).
        ``offset``: the index of ``x``'s first sample in the whole data (for Poisson input)."""
        x, timesteps = self._check(x, timesteps)
        _, size = self._plan("step", timesteps, 0, self._outputs[0])
        start = 0
        for batch, n in batches(x, size, self.static_batch):
            for t, values in enumerate(self._steps(batch, timesteps, self._rng(offset + start))):
                yield start, n, t, {k: v[:n] for k, v in values.items()}
            start += n

    def iter_run(
        self,
        x: Inputs,
        timesteps: int | None = None,
        per_step: bool = False,
        progress: Callable[[int], None] | None = None,
        output: str | None = None,
        offset: int = 0,
        keep: Sequence[int] | None = None,
        reserve: int = 0,
    ) -> Iterator[StepOutputs]:
        """Run ``x`` batch by batch; yields each batch's decoded outputs (see StepOutputs).
        ``progress(n)`` is called after each step of a batch of ``n`` samples. ``output``
        picks which of the model's outputs to decode (the first by default). ``offset``: the
        index of ``x``'s first sample in the whole data (for Poisson input). ``keep``: the
        steps (1..T) whose decoded outputs to yield, in order (default: every step with
        ``per_step``, else the last). Batches are sized so that the run stays under
        ``max_memory`` with ``reserve`` bytes held besides (the caller's outputs)."""
        x, timesteps = self._check(x, timesteps)
        head = output or self._outputs[0]
        if head not in self.model.model_outputs:
            raise ConfigError(f"no output {head!r}; the model's outputs are {', '.join(self.model.model_outputs)}")
        sources = self._sources(head)
        if keep is None:
            keep = range(1, timesteps + 1) if per_step else [timesteps]
        keep = [as_int(t, "keep", 1, timesteps) for t in keep]
        form, size = self._plan(self.form, timesteps, len(keep), head, reserve)
        if form == "unrolled":
            yield from self._iter_unrolled(x, timesteps, keep, progress, head, sources, size)
            return
        wanted = set(keep)
        start = 0
        for batch, n in batches(x, size, self.static_batch):
            totals: dict[str, np.ndarray] = {}
            kept: dict[str, dict[int, np.ndarray]] = {z: {} for z in sources}
            seconds = np.empty(timesteps)
            began = time.perf_counter()
            for t, values in enumerate(self._steps(batch, timesteps, self._rng(offset + start)), 1):
                for z in sources:
                    out = values[z][:n]
                    totals[z] = out.astype(np.float64) if t == 1 else totals[z] + out
                    if t in wanted:
                        kept[z][t] = totals[z] / t
                seconds[t - 1] = time.perf_counter() - began
                if progress:
                    progress(n)
            means = {z: np.stack([by_step[t] for t in keep]) for z, by_step in kept.items()}
            yield StepOutputs(start, self._decode(head, means), seconds)
            start += n

    def _sources(self, output: str) -> list[str]:
        """The graph outputs whose means decode ``output``: itself, or what the head reads."""
        head = self.model.head
        if head and output in head["outputs"]:
            return [name[: -len(DECODED)] for name in head["inputs"]]
        return [output]

    def _decode(self, output: str, means: dict[str, np.ndarray]) -> np.ndarray:
        """``output`` from the running means ``[steps, n, ...]`` of its sources: the trailing
        activation, or the head run on each step's means."""
        head = self.model.head
        if head and output in head["outputs"]:
            if self._head is None:
                self._head = _session(self.model.head_model(), ["CPUExecutionProvider"], self._options(), self._what)
            steps = len(next(iter(means.values())))
            with onnxruntime_errors(self._what, "running its output head"):
                rows = [
                    self._head.run([output], {z + DECODED: m[s].astype(np.float32) for z, m in means.items()})[0]
                    for s in range(steps)
                ]
            return np.stack(rows)
        activation = self._activations.get(output)
        if activation and activation.get("axis", -1) >= 0:  # the means have a leading step axis
            activation = {**activation, "axis": activation["axis"] + 1}
        return apply_activation(means[output], activation).astype(np.float32)

    def _iter_unrolled(self, x, timesteps, keep, progress, head, sources, size) -> Iterator[StepOutputs]:
        from .unrolled import PER_STEP, unroll

        if timesteps not in self._unrolled:
            model = unroll(self.model, timesteps, portable=False)  # run here by onnxruntime only
            self._unrolled[timesteps] = _session(model, self._providers, self._options(), self._what)
        session = self._unrolled[timesteps]
        rows = np.asarray(keep) - 1
        start = 0
        for batch, n in batches(x, size, self.static_batch):
            began = time.perf_counter()
            with onnxruntime_errors(self._what):
                results = session.run([z + PER_STEP for z in sources], batch)
            elapsed = time.perf_counter() - began
            means = {z: m[rows, :n].astype(np.float64) for z, m in zip(sources, results)}
            if progress:
                for _ in range(timesteps):
                    progress(n)
            # one run computes every step: its time is spread evenly over them
            seconds = elapsed * np.arange(1, timesteps + 1) / timesteps
            yield StepOutputs(start, self._decode(head, means), seconds)
            start += n

    def run(
        self,
        x: Inputs,
        timesteps: int | None = None,
        per_step: bool = False,
        output: str | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """The decoded output after ``timesteps`` steps, ``[N, ...]``; with ``per_step``
        the decoded output after every step ``t = 1..T``, ``[T, N, ...]``. ``output`` picks
        one of several model outputs (the first by default); ``progress`` shows a bar. ``x``: an
        array, or a dict of arrays by input name (``x_<name>`` keys too); a sequence input
        [N, T, ...] runs as many steps as it holds unless ``timesteps`` asks for fewer."""
        x, steps = self._check(x, timesteps)
        samples = num_samples(x)
        head = output or self._outputs[0]
        # the outputs of every sample are held at once: they count against the budget
        reserve = FLOAT * (steps if per_step else 1) * samples * output_elements(self.model, head)
        bar = progress_bar(samples * steps, progress)
        decoded, labels = None, []
        for out in self.iter_run(x, steps, per_step, bar.update, output, reserve=reserve):
            if out.decoded.dtype.kind not in "biuf":  # a label head's strings: their width varies by batch
                labels.append(out.decoded)
                continue
            if decoded is None:
                decoded = np.empty(out.decoded.shape[:1] + (samples,) + out.decoded.shape[2:], out.decoded.dtype)
            decoded[:, out.start : out.start + out.decoded.shape[1]] = out.decoded
        bar.close()
        if labels:
            decoded = np.concatenate(labels, axis=1)
        return decoded if per_step else decoded[0]
