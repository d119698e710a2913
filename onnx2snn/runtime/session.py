"""SNNSession: drives a step-form artifact for T timesteps in onnxruntime."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ..artifact import SNNModel, load
from ..data import check_input
from ..errors import ConfigError
from ..neuron import initial_membrane
from .batching import chunks
from .decode import apply_activation
from .forms import specialize_neuron, split_time_invariant
from .providers import device_of, resolve_providers


@dataclass
class StepOutputs:
    """Decoded outputs of one batch: ``decoded[t]`` is the prediction after ``t+1`` steps
    (only the last step unless per_step), ``seconds[t]`` the time spent up to that step."""

    start: int
    decoded: np.ndarray  # [steps, n, ...] (steps = T when per_step, else 1)
    seconds: np.ndarray  # [T]


def _session(model, providers: list[str], threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=providers)


class SNNSession:
    """Runs an SNN artifact. ``providers``: None picks TensorRT, CUDA, then CPU by what works;
    ``provider`` says which one the session really uses."""

    def __init__(
        self,
        model: SNNModel | str | os.PathLike,
        providers: str | Sequence[str] | None = None,
        batch_size: int = 256,
        threads: int | None = None,
    ):
        self.model = model if isinstance(model, SNNModel) else load(model)
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        meta = self.model.metadata
        self._layers = self.model.layers
        self._outputs = self.model.outputs
        self._activations = meta.get("output_activations", {})
        split = split_time_invariant(
            specialize_neuron(self.model.proto), [layer["membrane"] for layer in self._layers], self._outputs
        )
        chosen = resolve_providers(providers)
        self._step = _session(split.step, chosen, threads)
        self._prefix = _session(split.prefix, chosen, threads) if split.prefix is not None else None
        self._boundary = split.boundary
        self.provider: str = self._step.get_providers()[0]
        self._device = device_of(self.provider)
        thresholds = self.model.thresholds
        self._v0 = [(thresholds[layer["node"]], float(meta.get("v_init", 0.5))) for layer in self._layers]
        step_inputs = {i.name: i.shape for i in self._step.get_inputs()}
        self._state_shapes = [step_inputs[layer["membrane"]] for layer in self._layers]

    @property
    def static_batch(self) -> int | None:
        return self.model.input_shape[0] if self.model.input_shape else None

    def _ortvalue(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._device, 0)

    def _initial_states(self, n: int) -> list[np.ndarray]:
        states = []
        for shape, (theta, v_init) in zip(self._state_shapes, self._v0):
            dims = tuple(n if not isinstance(d, int) else d for d in shape)
            if isinstance(shape[0], int) and shape[0] != n:
                raise ConfigError(f"model has a static batch of {shape[0]}, got {n} samples")
            states.append(initial_membrane(dims, theta, v_init))
        return states

    def _batch(self, x: np.ndarray, timesteps: int, per_step: bool, tick: Callable[[], None]):
        inputs = {self.model.input_name: x}
        feeds = dict(inputs)
        if self._prefix is not None:
            names = [o.name for o in self._prefix.get_outputs()]
            feeds.update(zip(names, self._prefix.run(names, inputs)))
        # two bindings, membranes ping-ponging between two buffers: no copies between steps
        states = [self._ortvalue(s) for s in self._initial_states(len(x))]
        spare = [self._ortvalue(np.empty_like(s)) for s in self._initial_states(len(x))]
        bindings = []
        for src, dst in ((states, spare), (spare, states)):
            io = self._step.io_binding()
            for name in self._boundary:
                io.bind_ortvalue_input(name, self._ortvalue(feeds[name]))
            for layer, a, b in zip(self._layers, src, dst):
                io.bind_ortvalue_input(layer["membrane"], a)
                io.bind_ortvalue_output(layer["membrane_next"], b)
            for name in self._outputs:
                io.bind_output(name, self._device)
            bindings.append(io)

        total = None
        kept = []
        seconds = np.empty(timesteps)
        start = time.perf_counter()
        for t in range(timesteps):
            io = bindings[t % 2]
            self._step.run_with_iobinding(io)
            head = io.get_outputs()[len(self._layers)].numpy()
            total = head.astype(np.float64) if total is None else total + head
            if per_step or t == timesteps - 1:
                kept.append(apply_activation(total / (t + 1), self._activations.get(self._outputs[0])))
            seconds[t] = time.perf_counter() - start
            tick()
        return np.stack(kept).astype(np.float32), seconds

    def iter_run(
        self,
        x: np.ndarray,
        timesteps: int | None = None,
        per_step: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[StepOutputs]:
        """Run ``x`` batch by batch; yields each batch's decoded outputs (see StepOutputs).
        ``progress(n)`` is called after each step of a batch of ``n`` samples."""
        timesteps = self.model.timesteps if timesteps is None else timesteps
        if not isinstance(timesteps, (int, np.integer)) or timesteps <= 0:
            raise ConfigError(f"timesteps must be a positive integer, got {timesteps}")
        x = check_input(x, self.model.input_shape, self.model.input_name)
        start = 0
        for batch, n in chunks(x, self.batch_size, self.static_batch):
            tick = (lambda n=n: progress(n)) if progress else (lambda: None)
            decoded, seconds = self._batch(batch, int(timesteps), per_step, tick)
            yield StepOutputs(start, decoded[:, :n], seconds)
            start += n

    def run(self, x: np.ndarray, timesteps: int | None = None, per_step: bool = False) -> np.ndarray:
        """The decoded output after ``timesteps`` steps, ``[N, ...]``; with ``per_step``
        the decoded output after every step ``t = 1..T``, ``[T, N, ...]``."""
        parts = [out.decoded for out in self.iter_run(x, timesteps, per_step)]
        decoded = np.concatenate(parts, axis=1)
        return decoded if per_step else decoded[0]
