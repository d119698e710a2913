"""The SNN built so far, simulated level by level: what Spike-Norm and the corrections measure,
with each layer simulated once instead of the whole network before it once per layer.

A layer's threshold (Spike-Norm) or correction depends on statistics of its input current over
all calibration samples, with every layer before it already set. Re-simulating the network up
to each layer costs the square of the depth. Here the network is cut open at its IF layers
(runtime/cut.py) and run level by level (a level: the layers whose inputs are all set): a stage
of onnxruntime turns the stored spikes of earlier levels into this level's input currents over
all T steps at once ([T*n, ...] batches, chunk by chunk), the statistics are taken, the layers
set, and the compiled kernel turns the currents into spikes, which are stored (as bits: a spike
is 0 or its channel's threshold) for the levels after. Layers of one level do not feed each
other, so setting them together is what going layer by layer in graph order does.

A level is read twice (its statistics, then its firing with the settings they gave): the
currents of its first pass are kept for the second where they fit (CURRENTS_BUDGET), so its stage
runs once.

Memory: the stored spikes of the levels still to be read (T bits per neuron and sample; a cheap
node read by several levels is computed again in each, runtime/cut.py, so that what is kept is
bits, not its float output), one chunk's stage, sized to a budget, and the kept currents; the
number of samples is capped (simulate.SIMULATION_SAMPLES).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from ..build import build_snn
from ..data import WHOLE, Inputs, Shard, num_samples
from ..graph import default_opset, export_model
from ..limits import available_memory
from ..neuron import Corrections, Neurons, start_membrane
from ..passes import activation_nodes
from ..runtime import kernel
from ..runtime.cut import Cut, cut_at_neurons
from ..runtime.providers import session_options
from .reduce import channel_sums

DEFAULT_BUDGET = 1 << 30  # bytes for one chunk's stage
# bytes of stored spikes (and one sample's stage) past which calibration simulates up to each layer
STORED_BUDGET = 2 << 30
# bytes of input currents kept from a level's first pass (the statistics) for its second (the
# firing), so that the stage before it runs once instead of twice where they fit
CURRENTS_BUDGET = 512 << 20


@dataclass
class LayerSetting:
    """How an IF layer fires: its threshold and initial membrane."""

    threshold: np.ndarray
    start: np.ndarray


def _channels(node: gs.Node) -> tuple[int, ...]:
    """The shape of a per-channel value of an activation's output, (C, 1, ..., 1)."""
    shape = node.outputs[0].shape or []
    return (shape[1],) + (1,) * max(len(shape) - 2, 0) if len(shape) >= 2 else ()


@dataclass
class _Stage:
    session: ort.InferenceSession
    inputs: list[str]
    outputs: list[str]


@dataclass
class _Bits:
    """Stored spikes: one bit per neuron and step (a spike is 0 or its channel's threshold)."""

    bits: np.ndarray
    shape: tuple[int, ...]  # [T, n, ...]
    threshold: np.ndarray

    def spikes(self, out: np.ndarray | None = None) -> np.ndarray:
        return kernel.unpack_spikes(self.bits, self.shape, self.threshold, out)


@dataclass
class _Chunk:
    start: int
    x: dict[str, np.ndarray]  # the data inputs of these samples, by name
    stored: dict[str, np.ndarray | _Bits] = field(default_factory=dict)  # what later stages read


# a run's option that hands back what the arena holds unused once the run is done
_SHRINK = ort.RunOptions()
_SHRINK.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

_ONE_VALUE = onnx.helper.make_model(  # what release_memory runs
    onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "one_value",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    ),
    opset_imports=[onnx.helper.make_opsetid("", 13)],
    ir_version=8,
).SerializeToString()


@functools.cache
def shared_arena(pid: int | None = None) -> bool:
    """Whether the stages of this process (``pid``: a forked child registers its own) take their
    memory from one onnxruntime arena, registered here once: a level's stage outputs and working
    tensors then land where the level before freed its own, instead of in fresh memory of an arena
    of its own that is dropped with the stage (MobileNetV2's default: 8.7 -> 8.3 s, the same peak;
    new memory is slow to come on this machine). Each level's last stage run and release_memory
    hand back what it holds unused. False where onnxruntime refuses the registration (another
    allocator is registered for the CPU already): each stage then has an arena of its own."""
    del pid
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
    except Exception:
        return False
    return True


def release_memory() -> None:
    """Hand back what the shared arena holds unused (a run of a one-value model with _SHRINK):
    without it the process kept the largest level's stage memory after the conversion
    (MobileNetV2: 1,437 against 561 MB resident)."""
    if not shared_arena(os.getpid()):
        return
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.use_env_allocators", "1")
    session = ort.InferenceSession(_ONE_VALUE, options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.zeros(1, np.float32)}, _SHRINK)


def usable(graph: gs.Graph) -> bool:
    """Level-wise simulation runs the compiled kernel on batches of any size; without the kernel,
    or for a model with a fixed batch, calibration simulates the network up to each layer."""
    batch = (graph.inputs[0].shape or [None])[0]
    return kernel.available() and not isinstance(batch, int)


def computes(neurons: Neurons) -> bool:
    """Whether level-wise simulation computes these neurons exactly: the kernel fires IF
    neurons (one spike a step, stored as bits); a multi-spike conversion is simulated up to each
    layer instead, in the artifact's own MultiSpikeIF neurons."""
    return neurons.spike_mode == "single"


def why_not(graph: gs.Graph, neurons: Neurons | None = None) -> str:
    if neurons is not None and not computes(neurons):
        return f"the kernel fires IF neurons only, not spike_mode {neurons.spike_mode!r}"
    if not kernel.available():
        return kernel.why_unavailable()
    return "the model's batch is fixed"


def fits(graph: gs.Graph, neurons: Neurons, x: Inputs, budget: int = STORED_BUDGET) -> bool:
    """Whether level-wise simulation of ``x`` fits in ``budget`` bytes and in what the process
    can still get: the spikes it stores (at most T bits per neuron and sample) and one sample's
    largest stage. Where not (a large T: 512 on the reference CNN), calibration simulates the
    network up to each layer instead, batch by batch: slower, but its memory does not grow
    with T or with the number of samples."""
    arrays = list(x.values()) if isinstance(x, dict) else [x]
    sizes = [sum(int(np.prod(a.shape[1:])) for a in arrays)]  # the data inputs of one sample
    for node in activation_nodes(graph):
        shape = node.outputs[0].shape or []
        sizes.append(int(np.prod(shape[1:])) if all(isinstance(d, int) for d in shape[1:]) else sizes[0])
    stage = 4 * 4 * neurons.timesteps * max(sizes)
    stored = neurons.timesteps * sum(sizes[1:]) * num_samples(x) // 8
    left = available_memory()
    return stored + stage <= min(budget, left if left is not None else budget)


class Levelwise:
    """The SNN of canonical ``graph`` with ``neurons``, simulated level by level on ``x``."""

    def __init__(
        self,
        graph: gs.Graph,
        neurons: Neurons,
        x: Inputs,
        batch_size: int,
        shifts: bool = False,
        shard: Shard = WHOLE,
        budget: int = DEFAULT_BUDGET,
    ):
        """``shifts``: the layers get bias corrections (``set_shifts``), added to their input
        currents inside the stages, as the artifact's Add nodes do it (onnxruntime folds such an
        Add into the convolution before it: the same rounding as the artifact). ``shard``: the
        part of ``x``'s chunks simulated here (chunks are cut from all of ``x`` alike)."""
        self.shifts = shifts
        nodes = activation_nodes(graph)
        placeholder = {n.name: np.float32(1.0) for n in nodes}  # thresholds live in the kernel calls
        zeros = Corrections(current={n.name: np.zeros(_channels(n), np.float32) for n in nodes} if shifts else {})
        if not computes(neurons):  # never IF spikes where the artifact's neurons are others
            raise ValueError(f"level-wise simulation cannot run this network: {why_not(graph, neurons)}")
        snn = build_snn(graph, placeholder, neurons, zeros)
        self.neurons = neurons
        # Poisson inputs, in the order the step runtime draws them (runtime/inputs.py, Encoder)
        self.poisson = [i["name"] for i in snn.inputs if i.get("encoding", snn.encoding) == "poisson"]
        cut_graph, cuts, node_level = cut_at_neurons(snn, neurons.timesteps, self.poisson)
        self.cuts = {cut.layer["node"]: cut for cut in cuts}
        self.reset_to_zero = neurons.reset == "zero"
        self._graph, self._node_level = cut_graph, node_level
        self._opset = [onnx.helper.make_opsetid("", max(default_opset(snn.proto), 14))]
        self._corrections = {layer["node"]: layer["current_correction"] for layer in snn.layers if shifts}
        self.stages = {level: stage for level in sorted(set(node_level.values())) if (stage := self._stage(level))}
        self.levels = sorted({cut.level for cut in cuts})
        self.last_read = self._last_reads()
        feeds = x if isinstance(x, dict) else {snn.input_name: x}
        per_sample = self._per_sample_bytes(cut_graph, feeds)
        size = max(1, min(batch_size, int(budget // max(per_sample, 1))))
        if self.poisson:  # Poisson trains are drawn per batch of the session's size: keep its batches
            size = batch_size
        first, last = shard.bounds(num_samples(feeds), size)
        self.chunks = [
            _Chunk(start, {k: v[start : start + size] for k, v in feeds.items()}) for start in range(first, last, size)
        ]
        self._kept: dict[tuple[int, int], dict[str, np.ndarray]] = {}  # (level, chunk) -> currents
        self.started = False  # whether anything has run: a level's currents, shifts, spikes stored
        # the buffers a level's stage read its spikes from, by shape, for its next chunk: new
        # memory is slow to come (ResNet-50's unpacked spikes: 1.2 s of page faults)
        self._spare: dict[tuple[int, ...], list[np.ndarray]] = {}

    def _stage(self, level: int) -> _Stage | None:
        """The onnxruntime session of the nodes at ``level`` (None when nothing later reads them)."""
        graph, node_level = self._graph, self._node_level
        needed_at = {cut.current: cut.level - 1 for cut in self.cuts.values()}
        nodes = [n for n in graph.nodes if node_level[n.name] == level]
        produced = {t.name for n in nodes for t in n.outputs}
        inputs = {
            t.name: t
            for n in nodes
            for t in n.inputs
            if isinstance(t, gs.Variable) and t.name and t.name not in produced
        }
        outputs = {
            t.name: t
            for n in nodes
            for t in n.outputs
            if needed_at.get(t.name) == level or any(node_level[r.name] > level for r in t.outputs)
        }
        if not outputs:
            return None
        for t in list(inputs.values()) + list(outputs.values()):
            t.dtype = t.dtype or np.float32
        model = export_model(
            gs.Graph(nodes=nodes, inputs=list(inputs.values()), outputs=list(outputs.values())), self._opset
        )
        del model.graph.value_info[:]  # shapes say "N" where tensors hold T*N: onnxruntime infers them
        options = session_options(64)
        if shared_arena(os.getpid()):  # one arena for every level's stage (see shared_arena), else its own
            options.add_session_config_entry("session.use_env_allocators", "1")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return _Stage(session, list(inputs), list(outputs))

    def set_shifts(self, shifts: dict[str, np.ndarray]) -> None:
        """Bias corrections of layers (node -> per-channel shift) into the stages that compute
        their input currents."""
        self.started = True
        nodes = {n.name: n for n in self._graph.nodes}
        levels = set()
        for layer, shift in shifts.items():
            add = nodes[self._corrections[layer]]
            constant = next(t for t in add.inputs if isinstance(t, gs.Constant))
            constant.values = np.asarray(shift, np.float32).reshape(constant.values.shape)
            levels.add(self._node_level[add.name])
        for level in levels:
            self.stages[level] = self._stage(level)
        self._kept.clear()  # the currents change with the shifts

    def _last_reads(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for level, stage in self.stages.items():
            for name in stage.inputs:
                last[name] = max(last.get(name, -1), level)
        return last

    def _per_sample_bytes(self, graph: gs.Graph, x: dict[str, np.ndarray]) -> int:
        """A conservative size of one sample's largest stage: every state-sized tensor over T
        steps, eight times (the stage's inputs unpacked from bits, its outputs, onnxruntime's
        working copies and the kernel's: ResNet-50's residual stage used seven when the kernel wrote
        float spikes; it writes bits now, and the estimate stays on the safe side)."""
        sizes = [
            int(np.prod(t.shape[1:]))
            for t in graph.tensors().values()
            if t.shape and all(isinstance(d, int) for d in t.shape[1:])
        ]
        biggest = max(sizes + [int(np.prod(a.shape[1:])) for a in x.values()])
        return 8 * 4 * self.neurons.timesteps * biggest

    def layers_at(self, level: int) -> list[str]:
        return [name for name, cut in self.cuts.items() if cut.level == level]

    def _spike_trains(self, chunk: _Chunk) -> dict[str, np.ndarray]:
        """The Poisson inputs' spikes over all T steps, [T*n, ...] each: what the step runtime
        draws for the batch that starts at this chunk (SNNSession._rng, Encoder.step)."""
        rng = np.random.default_rng([self.neurons.seed, chunk.start])
        steps: dict[str, list[np.ndarray]] = {name: [] for name in self.poisson}
        for _ in range(self.neurons.timesteps):
            for name in self.poisson:
                x = chunk.x[name]
                steps[name].append((rng.random(x.shape) < x).astype(np.float32))
        return {name: np.concatenate(trains) for name, trains in steps.items()}

    def _value(self, chunk: _Chunk, name: str) -> np.ndarray:
        if name in chunk.x:
            if name in self.poisson:
                return self._spike_trains(chunk)[name]
            return chunk.x[name]
        value = chunk.stored[name]
        return value.spikes() if isinstance(value, _Bits) else value

    def _unpacked(self, bits: _Bits) -> np.ndarray:
        """Stored spikes unpacked, into a spare buffer where there is one."""
        spare = self._spare.get(tuple(bits.shape))
        return bits.spikes(spare.pop() if spare else None)

    def currents(self, level: int) -> Iterator[tuple[_Chunk, dict[str, np.ndarray]]]:
        """Chunk by chunk, the input currents of the layers at ``level``: [T, n, ...], or [n, ...]
        for a current that is the same every step."""
        self.started = True
        names = self.layers_at(level)
        stage = self.stages.get(level - 1)
        self._spare.clear()  # another level's shapes
        for i, chunk in enumerate(self.chunks):
            if (level, i) in self._kept:  # computed by this level's first pass
                yield chunk, self._kept[level, i]
                continue
            values = {}
            if stage is not None:
                bits = {n for n in stage.inputs if n not in chunk.x and isinstance(chunk.stored.get(n), _Bits)}
                feeds = {
                    n: self._unpacked(chunk.stored[n]) if n in bits else self._value(chunk, n) for n in stage.inputs
                }
                last = i == len(self.chunks) - 1 and shared_arena(os.getpid())
                values = dict(zip(stage.outputs, stage.session.run(stage.outputs, feeds, _SHRINK if last else None)))
                for name in bits:  # onnxruntime read them and kept none of them: spare for the next chunk
                    self._spare.setdefault(feeds[name].shape, []).append(feeds[name])
                for name in stage.outputs:
                    if self.last_read.get(name, -1) >= level:
                        chunk.stored[name] = values[name]  # read by a later stage
            currents = {}
            for layer in names:
                cut = self.cuts[layer]
                current = values[cut.current] if cut.current in values else self._value(chunk, cut.current)
                if not cut.constant:  # [T*n, ...] as computed -> [T, n, ...], a view
                    current = current.reshape((self.neurons.timesteps, -1) + current.shape[1:])
                currents[layer] = current
            kept = sum(c.nbytes for k in self._kept.values() for c in k.values())
            if stage is not None and kept + sum(c.nbytes for c in currents.values()) <= CURRENTS_BUDGET:
                self._kept[level, i] = currents
            yield chunk, currents

    def steps(self, layer: str, current: np.ndarray) -> Iterator[np.ndarray]:
        """A layer's input current step by step, [n, ...] each."""
        if self.cuts[layer].constant:
            for _ in range(self.neurons.timesteps):
                yield current
        else:
            yield from current

    def rates(self, layer: str, current: np.ndarray, setting: LayerSetting) -> tuple[np.ndarray, int]:
        """Per sample the sum of each channel's spikes over T steps, [n, C] float64, and how many
        values each sum holds: what the spikes of kernel.if_scan sum to (each spike is its channel's
        threshold, the sums exact), counted without them."""
        cut = self.cuts[layer]
        steps = self.neurons.timesteps if cut.constant else None
        counts = kernel.if_counts(current, setting.threshold, setting.start, self.reset_to_zero, steps)
        fired, positions = channel_sums(counts)
        theta = np.asarray(setting.threshold, np.float32).reshape(-1).astype(np.float64)
        return fired * theta, positions * self.neurons.timesteps

    def fire(self, level: int, settings: dict[str, LayerSetting]) -> None:
        """Set the layers at ``level``: their spikes, stored as bits for the levels after."""
        for chunk, currents in self.currents(level):
            for layer, current in currents.items():
                cut, setting = self.cuts[layer], settings[layer]
                steps = self.neurons.timesteps if cut.constant else None
                bits = kernel.if_bits(current, setting.threshold, setting.start, self.reset_to_zero, steps)
                shape = (self.neurons.timesteps, *(current.shape if cut.constant else current.shape[1:]))
                chunk.stored[cut.spikes] = _Bits(bits, shape, np.asarray(setting.threshold, np.float32))
            for name in [n for n in chunk.stored if self.last_read.get(n, -1) < level]:
                del chunk.stored[name]  # no stage after this level reads it
        self._kept.clear()
        self.stages.pop(level - 1, None)  # nothing reads it again: its session and memory go

    def start(self, threshold: np.ndarray) -> np.ndarray:
        """Where a layer's membranes start without a potential correction."""
        return start_membrane(threshold, self.neurons.v_init)


__all__ = ["Cut", "LayerSetting", "Levelwise", "usable"]
