"""The step form with compiled neurons: the step model cut open at its IF layers (stages.py),
onnxruntime running the linear stages and the compiled kernel (kernel.py) each IF layer in one
pass over its neurons, every buffer allocated once per batch size and bound with IOBinding.

In onnxruntime a neuron is five elementwise operators, each a full pass over the membrane
(about twelve tensor reads and writes per neuron per step); the kernel reads the current and
the membrane and writes the spikes and the membrane once (four). The arithmetic is the
artifact's, so outputs are bit-identical to the ONNX step form (to float rounding where a stage
sums a residual Add in another order or its blocked convolution adds it, blocked.fuse_sums). Where onnxruntime has a
blocked channel layout the stages and the kernel pass convolutional layers in it (blocked.py,
``layout == "blocked"``), saving the layout conversions at every neuron. Small batches run several
steps a stage call (chunk), larger ones as tiles of at most TILE samples one after the other, each
several steps a call (tiles). Used by SNNSession on the CPU provider when the kernel is built
(``session.neurons == "compiled"``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

import onnx2snn.runtime.blocked as blocked
import onnx2snn.runtime.kernel as kernel

from ..artifact import SNNModel, State
from ..neuron import OP_TYPE
from .stages import Stage, levels, split_stages

# steps a stage runs at once (chunk()): a run of k x n samples costs less than k runs of n
# while n is small (onnxruntime's fixed cost a run, its threads' start); past about 64
# samples a run, larger tensors only leave the cache (measured: cnn_bn at batch 64 went from
# 1.29x the dense time with one step a run to 1.59x with 8; at batch 8, 1.62x -> 1.21x)
CHUNK_SAMPLES = 64
MAX_CHUNK = 16
CHUNK_MEMORY = 256 * 2**20  # bytes the chunk's currents and spikes may take
# a larger batch runs as tiles of about this many samples, one after the other through all its
# steps on the same buffers, k steps a run (a run still holds CHUNK_SAMPLES samples): one tile's
# currents, spikes and membranes stay in the caches where the whole batch's did not (batch 64,
# T = 32, one core: cnn_bn 6.26 -> 5.75 ms a step with tiles of 16, 6.21 with 32, 6.07 with 8;
# resnet_small 12.79 -> 11.52, 11.95, 11.53). Taking the tiles in turn a few steps at a time,
# each on buffers of its own, was slower than the batch whole (7.44 and 13.29 ms)
TILE = 16


@dataclass
class _Prepared:
    """What CompiledSteps.steps needs for one batch shape, kept between batches."""

    value: dict[str, np.ndarray]  # every tensor the stages and the kernel pass, by name
    membranes: list[tuple[np.ndarray, np.ndarray]]  # each IF layer's membranes and their start
    pools: list[tuple[np.ndarray, list]]  # each stage state's start and its two buffers
    fired: list[list[kernel.Stepper]]  # by level: the IF layers that fire after its stage
    runs: dict[int, list]  # by steps a run: each level's session and its two bindings
    constant: set[str]  # the currents the prefix computes, one step's worth
    whole: set[str]  # the prefix's outputs bound as they are (no copy per step of a run)
    bind: Callable[[int], list] | None = None
    busy: bool = False  # a run is reading these buffers


class NotCompilable(Exception):
    """This step model cannot run with compiled neurons (the reason says why)."""


@dataclass
class _Neuron:
    node: str
    current: str
    spikes: str
    state: State
    threshold: np.ndarray
    level: int = 0
    channels: int = 0  # > 0: its current and spikes are in the blocked layout, of this many channels


def _shape(tensor: gs.Tensor) -> tuple[int, ...]:
    """The per-sample shape of a tensor whose first axis is the batch."""
    dims = list(tensor.shape or [])
    if not dims or any(not isinstance(d, int) for d in dims[1:]):
        raise NotCompilable(f"tensor '{tensor.name}' has no known per-sample shape")
    return tuple(dims[1:])


class CompiledSteps:
    """Runs ``step_model`` (the time-varying part of an artifact, as forms.split_time_invariant
    cuts it) one step at a time with compiled neurons."""

    def __init__(
        self,
        step_model: onnx.ModelProto,
        snn: SNNModel,
        states: list[State],
        read: list[str],
        make_session: Callable[..., ort.InferenceSession],
    ):
        if not kernel.available():
            raise NotCompilable(kernel.why_unavailable())
        graph = gs.import_onnx(step_model)
        graph.functions = []
        tensors = graph.tensors()
        nodes = {n.name: n for n in graph.nodes}
        by_membrane = {state.input: state for state in states}
        self.neurons: list[_Neuron] = []
        for layer in snn.layers:
            node = nodes.get(layer["node"])
            # an inlined artifact (the neuron is plain operators), or a neuron the kernel does not
            # compute (MultiSpikeIF, LIF, CubaLIF): the session runs the ONNX neurons instead
            if node is None or node.op != OP_TYPE:
                kind = f"a {node.op} node" if node is not None else "inlined"
                raise NotCompilable(f"layer '{layer['node']}' is {kind}, not an {OP_TYPE} node")
            current, spikes = node.inputs[0], node.outputs[0]
            state = by_membrane[layer["membrane"]]
            theta = np.asarray(snn.initializer(layer["threshold"]), np.float32)
            self.neurons.append(_Neuron(node.name, current.name, spikes.name, state, theta))
            node.inputs.clear()
            node.outputs.clear()
        cut = {x.node for x in self.neurons}
        graph.nodes = [node for node in graph.nodes if node.name not in cut]
        self.reset_to_zero = snn.metadata.get("reset") == "zero"
        membranes = {n.state.input for n in self.neurons} | {n.state.output for n in self.neurons}
        self.states = [s for s in states if s.input not in membranes]  # the pools': bound, ping-ponged
        graph.inputs = [t for t in graph.inputs if t.name not in membranes]
        graph.outputs = [t for t in graph.outputs if t.name not in membranes]
        spikes_of = {n.spikes: n.current for n in self.neurons}
        node_level, tensor_level = levels(graph, spikes_of)
        for neuron in self.neurons:
            neuron.level = tensor_level[neuron.spikes]
        self.read = list(read)
        wanted = {n.current for n in self.neurons} | {s.output for s in self.states} | set(read)
        stages = split_stages(graph, node_level, wanted, list(step_model.opset_import))
        self.shapes = {t.name: _shape(t) for stage in stages for t in stage.inputs + stage.outputs}
        edges = [t for stage in stages for t in stage.inputs + stage.outputs]
        # a tensor passed between stages without a batch axis (a fixed batch, a dequantized weight,
        # a shape) may hold the batch size: such a model runs one step a stage call
        self.unbatched = any(not t.shape or isinstance(t.shape[0], int) for t in edges)
        self.stage_reads = {t.name for stage in stages for t in stage.inputs}
        for neuron in self.neurons:
            self.shapes[neuron.current] = self.shapes[neuron.spikes] = _shape(tensors[neuron.state.input])
        self.block = blocked.block_size()
        models = self._blocked(stages) if self.block else {}
        self.stages = [
            (make_session(models[stage.level], False) if stage.level in models else make_session(stage.model), stage)
            for stage in stages
        ]
        self.layout = "blocked" if models else "plain"
        # the blocked layers whose current no stage computes (the prefix's, or a data input's that
        # changes every step), converted by onnxruntime's own reorder where it takes them (one pass
        # over the tensor; numpy's transposition took 1 ms a MB)
        made = {t.name for stage in stages for t in stage.outputs}
        self.from_outside = {x.current: x.channels for x in self.neurons if x.channels and x.current not in made}
        self.reorders = {
            name: make_session(blocked.reorder_model({name: (c, *self.shapes[name][1:])}), False)
            for name, c in self.from_outside.items()
            if c % 4 == 0
        }
        self._prepared: dict[tuple, _Prepared] = {}  # the last batch's buffers and bindings, by tile shape

    def _blocked(self, stages: list[Stage]) -> dict[int, onnx.ModelProto]:
        """The stages whose neuron edges go blocked, by level, as onnxruntime optimized them with
        the conversions there taken out; marks those neurons and their shapes. A layer goes
        blocked where every stage can take its spikes and give its current so; the rest stay
        plain (a layer feeding a dense layer, a tensor that is read)."""
        optimized = {stage.level: blocked.optimized(stage.model) for stage in stages}
        known = {stage.level: {**blocked.sample_shapes(stage.model), **self.shapes} for stage in stages}
        reads = {stage.level: {t.name for t in stage.inputs} for stage in stages}
        writes = {stage.level: {t.name for t in stage.outputs} for stage in stages}
        candidates = [
            x
            for x in self.neurons
            if len(self.shapes[x.current]) == 3
            and x.current not in self.read
            and x.spikes not in self.read
            and not any(x.current in names for names in reads.values())  # only the kernel reads a current
        ]
        # tensors one stage passes to another (a shortcut's convolution, ...): onnxruntime's alone
        neuron_edges = {x.current for x in self.neurons} | {x.spikes for x in self.neurons}
        states = {s.input for s in self.states} | {s.output for s in self.states}
        passed = {
            name
            for names in writes.values()
            for name in names
            if any(name in r for r in reads.values())
            and name not in neuron_edges | states | set(self.read)
            and len(self.shapes[name]) == 3
        }
        while True:
            failed: set[str] = set()
            models = {}
            wanted = {x.spikes for x in candidates} | {x.current for x in candidates} | passed
            for stage in stages:
                ins = wanted & reads[stage.level]
                outs = wanted & writes[stage.level]
                if not ins and not outs:
                    continue
                model, missed = blocked.unblock(optimized[stage.level], ins, outs, known[stage.level], self.block)
                failed |= missed
                if model is not None:
                    models[stage.level] = blocked.fuse_sums(model)
            if not failed:
                break
            candidates = [x for x in candidates if x.spikes not in failed and x.current not in failed]
            passed -= failed
        for name in passed:
            self.shapes[name] = (blocked.padded(self.shapes[name][0], self.block), *self.shapes[name][1:])
        for x in candidates:
            x.channels, *rest = self.shapes[x.current]
            self.shapes[x.current] = self.shapes[x.spikes] = (blocked.padded(x.channels, self.block), *rest)
        return models

    @property
    def chunks(self) -> bool:
        """Whether stages can run several steps a call: not where a stage keeps a state of its
        own from step to step (a max-pool's) or a tensor passed between stages has no batch axis."""
        return not self.states and not self.unbatched

    def chunk(self, n: int, timesteps: int, max_memory: int | None = None) -> int:
        """How many steps each stage runs at once for a batch of ``n``: their currents and spikes
        laid one step after the other, the stage runs on k x n samples and the kernel carries
        each row of membranes through the k steps in cache. One where it cannot (``chunks``);
        else up to CHUNK_SAMPLES samples a run, within CHUNK_MEMORY (and ``max_memory`` bytes)
        and MAX_CHUNK."""
        if not self.chunks:
            return 1
        per_step = 4 * n * sum(int(np.prod(shape)) for shape in self.shapes.values())
        memory = min(CHUNK_MEMORY, max_memory or CHUNK_MEMORY)
        return int(max(1, min(MAX_CHUNK, timesteps, CHUNK_SAMPLES // n, memory // max(per_step, 1))))

    def tiles(self, n: int, timesteps: int, max_memory: int | None = None, varying: bool = False) -> list[int]:
        """A batch of ``n`` cut into tiles, their sizes (as equal as can be, TILE samples or
        fewer), run one after the other; the batch whole where it has no more than TILE samples,
        where a tile would run one step a call (chunk: a tile is there to run several), where
        inputs change every step (``varying``: Poisson trains are drawn for the whole batch, step
        by step), or where the tensors read at every step, kept for all the steps until the last
        tile is done, would pass the memory bound that chunk keeps."""
        if n <= TILE:
            return [n]
        count = -(-n // TILE)
        sizes = [n // count + (i < n % count) for i in range(count)]
        read = 4 * n * timesteps * sum(int(np.prod(self.shapes.get(name, (1,)))) for name in self.read)
        memory = min(CHUNK_MEMORY, max_memory or CHUNK_MEMORY)
        if varying or read > memory or self.chunk(sizes[0], timesteps, max_memory) == 1:
            return [n]
        return sizes

    def _prepare(
        self, feeds: dict[str, np.ndarray], n: int, k: int, keep: bool = True, beside: frozenset = frozenset()
    ) -> _Prepared:
        """Buffers, membranes, kernel calls and bindings for batches (or tiles) of ``n`` run ``k``
        steps at a time, made once and kept for the next ones of the same shape (``keep``: with
        those of ``beside``, the keys of the batch's other tiles; the rest go)."""
        key = self._key(feeds, n, k)
        if keep and key in self._prepared:
            return self._prepared[key]
        stateful = {s.input for s in self.states} | {s.output for s in self.states}
        needed = self.stage_reads | {x.current for x in self.neurons}
        feeds = {name: array for name, array in feeds.items() if name in needed}
        # the currents only the kernel reads, computed before the steps: one step's worth
        constant = {x.current for x in self.neurons if x.current in feeds and x.current not in self.stage_reads}
        whole = constant | (set(feeds) if k == 1 else set())  # bound as they are
        value: dict[str, np.ndarray] = {}
        for name, array in feeds.items():
            if name in constant:
                value[name] = np.empty((n, *self.shapes[name]), np.float32)
            elif name in whole:
                value[name] = np.empty(array.shape, array.dtype)
            else:  # what a stage reads from the prefix: the same at each of k steps
                value[name] = np.empty((k * n, *array.shape[1:]), array.dtype)
        for name, shape in self.shapes.items():
            if name not in value and name not in stateful:
                value[name] = np.zeros((k * n,) + shape, np.float32)
        pools = [
            (np.broadcast_to(s.initial, (n,) + self.shapes[s.output]).astype(np.float32), [None, None])
            for s in self.states
        ]
        for start, pair in pools:
            pair[0], pair[1] = np.array(start, order="C"), np.empty(start.shape, np.float32)
        membranes, steppers = [], []
        for x in self.neurons:
            shape = self.shapes[x.current]
            if x.channels:  # one sample's start, blocked, broadcast over the batch when reset
                start = blocked.to_blocked(np.broadcast_to(x.state.initial, (1, x.channels, *shape[1:])), self.block)
            else:
                start = np.broadcast_to(np.asarray(x.state.initial, np.float32), (1,) + shape)
            membrane = np.empty((n,) + shape, np.float32)
            membranes.append((membrane, start))
            block = self.block if x.channels else None
            once = x.current in constant
            theta, zero = x.threshold, self.reset_to_zero
            steppers.append(kernel.Stepper(value[x.current], value[x.spikes], membrane, theta, zero, block, once))
        by_level = {stage.level: (session, stage) for session, stage in self.stages}
        depth = max([x.level for x in self.neurons] + list(by_level)) + 1
        fired = [[s for x, s in zip(self.neurons, steppers) if x.level == level + 1] for level in range(depth)]
        prepared = _Prepared(value, membranes, pools, fired, {}, constant, whole)

        def bind(steps: int) -> list:
            orts = {
                name: ort.OrtValue.ortvalue_from_numpy(array if name in whole else array[: steps * n])
                for name, array in value.items()
            }
            levels = []
            for level in range(depth):
                if level not in by_level:
                    levels.append((None, None))
                    continue
                session, stage = by_level[level]
                pair = []
                for parity in (0, 1):
                    io = session.io_binding()
                    for t in stage.inputs:
                        if t.name in orts:
                            io.bind_ortvalue_input(t.name, orts[t.name])
                    for t in stage.outputs:
                        if t.name in orts:
                            io.bind_ortvalue_output(t.name, orts[t.name])
                    for state, (_, buffers) in zip(self.states, pools):  # in from one buffer, out to the other
                        if any(t.name == state.input for t in stage.inputs):
                            io.bind_ortvalue_input(state.input, ort.OrtValue.ortvalue_from_numpy(buffers[parity]))
                        if any(t.name == state.output for t in stage.outputs):
                            out = ort.OrtValue.ortvalue_from_numpy(buffers[1 - parity])
                            io.bind_ortvalue_output(state.output, out)
                    pair.append(io)
                levels.append((session, pair))
            return levels

        prepared.bind = bind
        if keep:
            self._prepared = {old: p for old, p in self._prepared.items() if old in beside}
            self._prepared[key] = prepared
        return prepared

    def steps(
        self,
        feeds: dict[str, np.ndarray],
        n: int,
        timesteps: int,
        per_step_inputs: Callable[[], dict[str, np.ndarray]] | None,
        max_memory: int | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """The ``read`` tensors after each of ``timesteps`` steps of a batch of ``n``. ``feeds``:
        the time-invariant inputs (boundary tensors); ``per_step_inputs`` gives the data inputs
        that change every step (Poisson encoding, a sequence's slices), by name; ``max_memory``
        bounds the buffers of several steps a call (chunk)."""
        sizes = self.tiles(n, timesteps, max_memory, per_step_inputs is not None)
        if len(sizes) == 1:
            yield from self._run(feeds, n, timesteps, per_step_inputs, max_memory, [])
            return
        bounds = np.cumsum([0, *sizes]).tolist()
        tiles = [
            ({name: a[first:last] for name, a in feeds.items()}, last - first)
            for first, last in zip(bounds, bounds[1:])
        ]
        keys = [self._key(part, m, self.chunk(m, timesteps, max_memory)) for part, m in tiles]
        read: list[list[dict[str, np.ndarray]]] = [[] for _ in range(timesteps)]
        for part, m in tiles:  # one after the other, each through all the steps
            for t, values in enumerate(self._run(part, m, timesteps, None, max_memory, keys)):
                read[t].append(values)
        for values in read:
            yield {name: np.concatenate([v[name] for v in values]) for name in self.read}

    def _key(self, feeds: dict[str, np.ndarray], n: int, k: int) -> tuple:
        return (n, k, tuple((name, a.shape) for name, a in sorted(feeds.items())))

    def _run(
        self,
        feeds: dict[str, np.ndarray],
        n: int,
        timesteps: int,
        per_step_inputs: Callable[[], dict[str, np.ndarray]] | None,
        max_memory: int | None,
        keys: list[tuple],
    ) -> Iterator[dict[str, np.ndarray]]:
        """steps for a batch or a tile of ``n`` (``keys``: the shapes of the batch's tiles, whose
        buffers are kept together; none for a whole batch)."""
        k = self.chunk(n, timesteps, max_memory)
        ready = self._prepare(feeds, n, k, beside=frozenset(keys))
        if ready.busy:  # another run of the same batch shape is still being read: its own buffers
            ready = self._prepare(feeds, n, k, keep=False)
        ready.busy = True
        try:
            value = ready.value
            for name, array in feeds.items():
                if name not in value:
                    continue
                if name in self.from_outside:
                    self._to_blocked(name, array, value[name])
                elif name in ready.whole:  # the constant currents among them
                    value[name][...] = array
                else:
                    value[name].reshape(k, n, *array.shape[1:])[...] = array
            for membrane, start in ready.membranes:
                np.copyto(membrane, start)
            for start, pair in ready.pools:
                np.copyto(pair[0], start)
            done = 0
            while done < timesteps:
                steps = min(k, timesteps - done)
                if steps not in ready.runs:
                    ready.runs[steps] = ready.bind(steps)
                if per_step_inputs is not None:  # into the buffers the stages that read them are bound to
                    for j in range(steps):
                        for name, spikes in per_step_inputs().items():
                            if name in self.from_outside:  # a blocked layer's current
                                self._to_blocked(name, spikes, value[name][j * n : (j + 1) * n])
                            elif name in value:
                                value[name][j * n : (j + 1) * n] = spikes
                for level, (session, pair) in enumerate(ready.runs[steps]):
                    if session is not None:
                        session.run_with_iobinding(pair[done % 2])
                    for step in ready.fired[level]:
                        step(steps)
                for j in range(steps):
                    yield {name: value[name][j * n : (j + 1) * n].copy() for name in self.read}
                done += steps
        finally:
            ready.busy = False

    def _to_blocked(self, name: str, plain: np.ndarray, out: np.ndarray) -> None:
        """``plain`` [n, C, H, W] into ``out`` in the blocked layout (onnxruntime's reorder where
        it takes the tensor, numpy's otherwise)."""
        session = self.reorders.get(name)
        if session is None:
            out[...] = blocked.to_blocked(plain, self.block)
            return
        source = np.ascontiguousarray(plain, np.float32)  # held until the run is done
        io = session.io_binding()
        io.bind_cpu_input(name, source)
        io.bind_ortvalue_output(name + "/blocked", ort.OrtValue.ortvalue_from_numpy(out))
        session.run_with_iobinding(io)
