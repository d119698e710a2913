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
from ..graph import IR_VERSION, default_opset, reached_from
from ..neuron import DOMAIN, OP_TYPE, body_nodes

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


def unroll(snn: SNNModel, timesteps: int) -> onnx.ModelProto:
    """The unrolled form of ``snn`` for ``timesteps`` steps (see the module docstring)."""
    meta = snn.metadata
    if timesteps <= 0:
        raise ConfigError(f"timesteps must be positive, got {timesteps}")
    if meta.get("encoding", "direct") != "direct":
        raise ConfigError("the unrolled form needs direct encoding (Poisson input is drawn by the step runtime)")
    if isinstance(snn.input_shape[0], int):
        raise ConfigError("the unrolled form needs a dynamic batch axis (this model's batch is fixed)")
    graph = gs.import_onnx(snn.proto)
    graph.functions = []
    tensors = graph.tensors()
    inits = {t.name: numpy_helper.to_array(t) for t in snn.proto.graph.initializer}
    layers = {layer["node"]: layer for layer in snn.layers}
    pools = {pool["node"]: pool for pool in meta.get("pools", [])}
    states = {layer["membrane"] for layer in snn.layers}
    for pool in pools.values():
        states |= {pool["accumulated"], pool["pooled"]}
    b = _Builder(graph, timesteps)

    varying = reached_from(graph, states)
    order = graph.nodes
    folded: dict[str, gs.Tensor] = {}  # name of a [N, ...] tensor -> its [T*N, ...] version

    def fold(t: gs.Tensor) -> gs.Tensor:
        if t.name in varying or isinstance(t, gs.Constant) or not t.name:
            return t
        if t.name not in folded:
            rank = len(t.shape) if t.shape is not None else len(snn.input_shape)
            folded[t.name] = b.tiled(t, rank, t.name)
            varying.add(folded[t.name].name)
        return folded[t.name]

    pool_parts = {f"{p}.{part}": p for p in pools for part in ("accumulate", "difference")}
    for node in list(order):
        if not any(t.name in varying for t in node.inputs):
            continue  # time-invariant: runs once on [N, ...]
        if node.domain == DOMAIN and node.op == OP_TYPE:
            layer = layers[node.name]
            x = fold(node.inputs[0])
            spikes = node.outputs[0]
            theta = np.asarray(inits[layer["threshold"]], np.float32)
            if layer.get("membrane_init"):
                v0 = np.asarray(inits[layer["membrane_init"]], np.float32)
            else:
                v0 = np.float32(node.attrs.get("v_init", 0.5)) * theta
            x_t = b.time_major(x, node.name)
            v_start = b.node(
                "Expand", [b.const(np.asarray(v0, np.float32), node.name), b.tail_shape(x_t, node.name)], hint=node.name
            )
            state_shape = [d if isinstance(d, int) else None for d in tensors[layer["membrane"]].shape]
            body = _if_body(
                theta,
                bool(node.attrs.get("reset_to_zero", 0)),
                node.name,
                ["N" if d is None else d for d in state_shape],
            )
            _, spikes_t = b.node(
                "Scan", [v_start, x_t], {"body": body, "num_scan_inputs": 1}, hint=node.name, outputs=2
            )
            node.outputs.clear()
            node.inputs.clear()
            folded_spikes = b.time_folded(spikes_t, node.name)
            varying.add(folded_spikes.name)
            for consumer in list(spikes.outputs):
                consumer.inputs = [folded_spikes if t is spikes else t for t in consumer.inputs]
            if spikes in graph.outputs:
                graph.outputs = [folded_spikes if t is spikes else t for t in graph.outputs]
            continue
        if node.name in pool_parts:
            continue  # rebuilt with its MaxPool below
        if node.name in pools:
            add = next(n for n in graph.nodes if n.name == f"{node.name}.accumulate")
            sub = next(n for n in graph.nodes if n.name == f"{node.name}.difference")
            x = fold(add.inputs[1])
            cumulative = b.node("CumSum", [b.time_major(x, node.name), b.const(np.int64(0), node.name)], hint=node.name)
            pooled = b.node(node.op, [b.time_folded(cumulative, node.name)], dict(node.attrs), hint=node.name)
            pooled_t = b.time_major(pooled, node.name)
            zeros = b.node(
                "Mul",
                [
                    b.node("Slice", [pooled_t, b.const([0], node.name), b.const([1], node.name)], hint=node.name),
                    b.const(np.float32(0), node.name),
                ],
                hint=node.name,
            )
            previous = b.node(
                "Concat",
                [zeros, b.node("Slice", [pooled_t, b.const([0], node.name), b.const([-1], node.name)], hint=node.name)],
                {"axis": 0},
                hint=node.name,
            )
            y = b.time_folded(b.node("Sub", [pooled_t, previous], hint=node.name), node.name)
            varying.add(y.name)
            out = sub.outputs[0]
            for consumer in list(out.outputs):
                consumer.inputs = [y if t is out else t for t in consumer.inputs]
            for n in (add, node, sub):
                n.inputs.clear()
                n.outputs.clear()
            continue
        node.inputs = [fold(t) for t in node.inputs]

    outputs = []
    for name in snn.outputs:
        head = tensors[name]
        if name in varying:
            per_step_sum = b.node("CumSum", [b.time_major(head, name), b.const(np.int64(0), name)], hint=name)
        else:
            per_step_sum = b.node(
                "CumSum",
                [b.time_major(b.tiled(head, len(head.shape or [2]), name), name), b.const(np.int64(0), name)],
                hint=name,
            )
        counts = np.arange(1, timesteps + 1, dtype=np.float32).reshape((timesteps,) + (1,) * len(head.shape or [2]))
        head_shape = ["N" if not isinstance(d, int) else d for d in (head.shape or ["N"])]
        per_step = gs.Variable(name + PER_STEP, dtype=np.float32, shape=[timesteps] + head_shape)
        graph.nodes.append(
            gs.Node("Div", f"{name}.mean_over_steps", inputs=[per_step_sum, b.const(counts, name)], outputs=[per_step])
        )
        last = b.node("Gather", [per_step, b.const(np.int64(timesteps - 1), name)], {"axis": 0}, hint=name)
        decoded = gs.Variable(name + ".decoded", dtype=np.float32, shape=head_shape)
        activation = meta.get("output_activations", {}).get(name)
        if activation:
            graph.nodes.append(
                gs.Node(activation["op"], f"{name}.activation", {"axis": activation["axis"]}, [last], [decoded])
            )
        else:
            graph.nodes.append(gs.Node("Identity", f"{name}.final", inputs=[last], outputs=[decoded]))
        outputs += [decoded, per_step]
    graph.outputs = outputs
    graph.inputs = [tensors[snn.input_name]]
    graph.cleanup().toposort(mode="nodes")
    model = gs.export_onnx(graph, do_type_check=False)
    # the step form's shapes say "N" where the time-folded tensors hold T*N: let onnxruntime infer
    del model.graph.value_info[:]
    model.ir_version = IR_VERSION
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", max(default_opset(snn.proto), 14)))
    model.metadata_props.append(onnx.StringStringEntryProto(key="onnx2snn.unrolled_timesteps", value=str(timesteps)))
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
