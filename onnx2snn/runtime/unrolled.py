"""The unrolled form: all T steps in one ``session.run``.

Every linear node runs once on a ``[T*N, ...]`` batch (time folded into the batch); each IF
layer becomes a Scan over the T steps of its input current (its membrane is the Scan state);
a spiking max-pool becomes a CumSum over time, one MaxPool on the batch, and a difference along
time. What no neuron reaches runs once on ``[N, ...]`` and is tiled T times where the time-folded
part reads it. Outputs: ``<head>.per_step`` ``[T, N, ...]``, the mean of the head over steps
1..t for every t, and ``<head>``, the decoded output after T steps (with the ANN's trailing
Softmax/LogSoftmax). No Python loop drives it: it deploys as a plain ONNX file.

Peak memory grows with T*N: ``batch_for_budget`` picks how many samples fit a budget.
Direct encoding only (the Poisson spike trains come from the runtime's seeded generator).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper

from ..artifact import SNNModel
from ..errors import ConfigError
from ..graph import default_opset, export_model, reached_from
from ..neuron import body_nodes

PER_STEP = ".per_step"


class _Builder:
    def __init__(self, graph: gs.Graph, timesteps: int):
        self.graph = graph
        self.T = timesteps
        self.count = 0

    def tensor(self, hint: str, dtype=np.float32) -> gs.Variable:
        self.count += 1
        return gs.Variable(f"{hint}.unrolled_{self.count}", dtype=dtype)

    def node(
        self, op: str, inputs: list, attrs: dict | None = None, hint: str = "", outputs: int = 1, dtype=np.float32
    ):
        outs = [self.tensor(hint or op, dtype) for _ in range(outputs)]
        self.graph.nodes.append(gs.Node(op, f"{hint or op}.{op}_{self.count}", attrs or {}, inputs, outs))
        return outs[0] if outputs == 1 else outs

    def const(self, values, hint: str) -> gs.Constant:
        self.count += 1
        return gs.Constant(f"{hint}.c{self.count}", np.asarray(values))

    def tail_shape(self, x: gs.Tensor, hint: str) -> gs.Variable:
        """Shape(x)[1:]."""
        shape = self.node("Shape", [x], hint=hint, dtype=np.int64)
        return self.node("Slice", [shape, self.const([1], hint), self.const([2**62], hint)], hint=hint, dtype=np.int64)

    def time_major(self, x: gs.Tensor, hint: str) -> gs.Variable:
        """[T*N, ...] -> [T, N, ...]."""
        shape = self.node(
            "Concat", [self.const([self.T, -1], hint), self.tail_shape(x, hint)], {"axis": 0}, hint=hint, dtype=np.int64
        )
        return self.node("Reshape", [x, shape], hint=hint)

    def time_folded(self, x: gs.Tensor, hint: str) -> gs.Variable:
        """[T, N, ...] -> [T*N, ...]."""
        tail = self.node(
            "Slice",
            [self.node("Shape", [x], hint=hint, dtype=np.int64), self.const([2], hint), self.const([2**62], hint)],
            hint=hint,
            dtype=np.int64,
        )
        shape = self.node("Concat", [self.const([-1], hint), tail], {"axis": 0}, hint=hint, dtype=np.int64)
        return self.node("Reshape", [x, shape], hint=hint)

    def tiled(self, x: gs.Tensor, rank: int, hint: str) -> gs.Variable:
        """[N, ...] -> [T*N, ...]: the same value at every step."""
        expanded = self.node(
            "Expand",
            [self.node("Unsqueeze", [x, self.const([0], hint)], hint=hint), self.const([self.T] + [1] * rank, hint)],
            hint=hint,
        )
        return self.time_folded(expanded, hint)


def _if_body(theta: np.ndarray, reset_to_zero: bool, name: str, shape: list) -> gs.Graph:
    """The Scan body of one IF layer: the neuron's own step (neuron.body_nodes, as the step form
    runs it), its names prefixed with the layer's and its threshold a constant."""
    nodes = []
    for proto in body_nodes("zero" if reset_to_zero else "subtract"):
        node = onnx.NodeProto()
        node.CopyFrom(proto)
        node.input[:] = [f"{name}.{t}" for t in proto.input]
        node.output[:] = [f"{name}.{t}" for t in proto.output]
        nodes.append(node)

    def value(t: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(f"{name}.{t}", onnx.TensorProto.FLOAT, shape)

    body = helper.make_graph(
        nodes,
        f"{name}.step",
        inputs=[value("membrane"), value("x")],
        outputs=[value("membrane_next"), value("spikes")],
        initializer=[numpy_helper.from_array(theta.astype(np.float32), f"{name}.threshold")],
    )
    return gs.import_onnx(helper.make_model(body))


class _Unroller:
    """Rewrites the step form's graph in place into the unrolled form (see ``unroll``)."""

    def __init__(self, snn: SNNModel, timesteps: int):
        self.snn = snn
        self.graph = gs.import_onnx(snn.proto)
        self.graph.functions = []
        self.tensors = self.graph.tensors()
        self.nodes = {n.name: n for n in self.graph.nodes}
        self.b = _Builder(self.graph, timesteps)
        states = [layer["membrane"] for layer in snn.layers]
        states += [pool[k] for pool in snn.pools for k in ("accumulated", "pooled")]
        self.varying = reached_from(self.graph, states)
        # what no sample reaches (weights behind a DequantizeLinear) is the same for the whole batch
        self.per_sample = reached_from(self.graph, [snn.input_name])
        self.folded: dict[str, gs.Tensor] = {}  # name of a [N, ...] tensor -> its [T*N, ...] version

    def fold(self, t: gs.Tensor) -> gs.Tensor:
        """``t`` on the time-folded batch: as it is where it varies, else tiled T times (once)."""
        if t.name in self.varying or isinstance(t, gs.Constant) or not t.name or t.name not in self.per_sample:
            return t
        if t.name not in self.folded:
            rank = len(t.shape) if t.shape is not None else len(self.snn.input_shape)
            self.folded[t.name] = self.b.tiled(t, rank, t.name)
            self.varying.add(self.folded[t.name].name)
        return self.folded[t.name]

    def reroute(self, old: gs.Tensor, new: gs.Tensor) -> None:
        """Every reader of ``old`` (and the graph outputs) reads the time-folded ``new``."""
        self.varying.add(new.name)
        for consumer in list(old.outputs):
            consumer.inputs = [new if t is old else t for t in consumer.inputs]
        if old in self.graph.outputs:
            self.graph.outputs = [new if t is old else t for t in self.graph.outputs]

    def neuron(self, node: gs.Node, layer: dict) -> None:
        """An IF layer: a Scan over T of its input current, the neuron's own step as the body."""
        b = self.b
        x_t = b.time_major(self.fold(node.inputs[0]), node.name)
        v0 = b.const(self.snn.initial_membrane(layer), node.name)
        v_start = b.node("Expand", [v0, b.tail_shape(x_t, node.name)], hint=node.name)
        state_shape = ["N" if not isinstance(d, int) else d for d in self.tensors[layer["membrane"]].shape]
        theta = np.asarray(self.snn.initializer(layer["threshold"]), np.float32)
        body = _if_body(theta, bool(node.attrs.get("reset_to_zero", 0)), node.name, state_shape)
        _, spikes_t = b.node("Scan", [v_start, x_t], {"body": body, "num_scan_inputs": 1}, hint=node.name, outputs=2)
        spikes = node.outputs[0]
        node.outputs.clear()
        node.inputs.clear()
        self.reroute(spikes, b.time_folded(spikes_t, node.name))

    def pool(self, pool: dict) -> None:
        """A spiking max-pool: the pool of the accumulated input (CumSum over time), differenced."""
        b = self.b
        add, node, sub = self.nodes[pool["accumulate"]], self.nodes[pool["node"]], self.nodes[pool["difference"]]
        hint = node.name
        cumulative = b.node(
            "CumSum", [b.time_major(self.fold(add.inputs[1]), hint), b.const(np.int64(0), hint)], hint=hint
        )
        pooled_t = b.time_major(b.node(node.op, [b.time_folded(cumulative, hint)], dict(node.attrs), hint=hint), hint)
        first = b.node("Slice", [pooled_t, b.const([0], hint), b.const([1], hint)], hint=hint)
        zeros = b.node("Mul", [first, b.const(np.float32(0), hint)], hint=hint)
        before_last = b.node("Slice", [pooled_t, b.const([0], hint), b.const([-1], hint)], hint=hint)
        previous = b.node("Concat", [zeros, before_last], {"axis": 0}, hint=hint)
        y = b.time_folded(b.node("Sub", [pooled_t, previous], hint=hint), hint)
        out = sub.outputs[0]
        for n in (add, node, sub):
            n.inputs.clear()
            n.outputs.clear()
        self.reroute(out, y)

    def decoded(self, name: str) -> list[gs.Variable]:
        """``name``'s running mean over steps ``[T, N, ...]`` and its decoded value after T steps."""
        b, T = self.b, self.b.T
        head = self.tensors[name]
        rank = len(head.shape or [2])
        steps = head if name in self.varying else b.tiled(head, rank, name)
        per_step_sum = b.node("CumSum", [b.time_major(steps, name), b.const(np.int64(0), name)], hint=name)
        counts = np.arange(1, T + 1, dtype=np.float32).reshape((T,) + (1,) * rank)
        head_shape = ["N" if not isinstance(d, int) else d for d in (head.shape or ["N"])]
        per_step = gs.Variable(name + PER_STEP, dtype=np.float32, shape=[T] + head_shape)
        self.graph.nodes.append(
            gs.Node("Div", f"{name}.mean_over_steps", inputs=[per_step_sum, b.const(counts, name)], outputs=[per_step])
        )
        last = b.node("Gather", [per_step, b.const(np.int64(T - 1), name)], {"axis": 0}, hint=name)
        decoded = gs.Variable(name + ".decoded", dtype=np.float32, shape=head_shape)
        activation = self.snn.metadata.get("output_activations", {}).get(name)
        if activation:
            act = gs.Node(activation["op"], f"{name}.activation", {"axis": activation["axis"]}, [last], [decoded])
        else:
            act = gs.Node("Identity", f"{name}.final", inputs=[last], outputs=[decoded])
        self.graph.nodes.append(act)
        return [decoded, per_step]

    def run(self) -> gs.Graph:
        layers = {layer["node"]: layer for layer in self.snn.layers}
        pools = {pool["node"]: pool for pool in self.snn.pools}
        pool_parts = {pool[k] for pool in self.snn.pools for k in ("accumulate", "difference")}
        for node in list(self.graph.nodes):
            if not any(t.name in self.varying for t in node.inputs):
                continue  # time-invariant: runs once on [N, ...]
            if node.name in layers:
                self.neuron(node, layers[node.name])
            elif node.name in pools:
                self.pool(pools[node.name])
            elif node.name not in pool_parts:  # those are rebuilt with their MaxPool
                node.inputs = [self.fold(t) for t in node.inputs]
        self.graph.outputs = [t for name in self.snn.outputs for t in self.decoded(name)]
        self.graph.inputs = [self.tensors[self.snn.input_name]]
        return self.graph.cleanup().toposort(mode="nodes")


def unroll(snn: SNNModel, timesteps: int, check: bool = False) -> onnx.ModelProto:
    """The unrolled form of ``snn`` for ``timesteps`` steps (see the module docstring);
    ``check`` runs ONNX's full checker on it."""
    if timesteps <= 0:
        raise ConfigError(f"timesteps must be positive, got {timesteps}")
    if snn.encoding != "direct":
        raise ConfigError("the unrolled form needs direct encoding (Poisson input is drawn by the step runtime)")
    if isinstance(snn.input_shape[0], int):
        raise ConfigError("the unrolled form needs a dynamic batch axis (this model's batch is fixed)")
    opset = onnx.helper.make_opsetid("", max(default_opset(snn.proto), 14))
    model = export_model(_Unroller(snn, timesteps).run(), [opset])
    # the step form's shapes say "N" where the time-folded tensors hold T*N: let onnxruntime infer
    del model.graph.value_info[:]
    model.metadata_props.append(onnx.StringStringEntryProto(key="onnx2snn.unrolled_timesteps", value=str(timesteps)))
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def batch_for_budget(snn: SNNModel, timesteps: int, max_memory: int) -> int:
    """Samples per run of the unrolled form so that its time-folded tensors stay under
    ``max_memory`` bytes. A heuristic, conservative on the reference networks (peak resident
    memory measured by benchmarks/speed.py): every state's [T, N, ...] sequence twice (a Scan's
    input current and its spikes) and two more copies of the largest."""
    sizes = [1]
    for value in snn.proto.graph.input:
        if value.name == snn.input_name:
            continue
        dims = value.type.tensor_type.shape.dim[1:]
        sizes.append(int(np.prod([d.dim_value if d.HasField("dim_value") else 1 for d in dims] or [1])))
    per_sample = 4 * timesteps * (2 * sum(sizes) + 2 * max(sizes))
    return max(1, int(max_memory // per_sample))
