"""The unrolled form: all T steps in one ``session.run``.

Every linear node runs once on a ``[T*N, ...]`` batch (time folded into the batch); each IF
(or MultiSpikeIF) layer becomes a Scan over the T steps of its input current (its membrane is
the Scan state);
a spiking max-pool becomes a CumSum over time, one MaxPool on the batch, and a difference along
time. What no neuron reaches runs once on ``[N, ...]`` and is tiled T times where the time-folded
part reads it. Outputs: ``<head>.per_step`` ``[T, N, ...]``, the mean of the head over steps
1..t for every t, and ``<head>.decoded``, the decoded output after T steps (with the ANN's
trailing Softmax/LogSoftmax), and the outputs of a trailing head (ArgMax, labels) under the ANN's names.
No Python loop drives it: it deploys as a plain ONNX file.

Peak memory grows with T*N: ``batch_for_budget`` picks how many samples fit a budget.
Direct encoding only (the Poisson spike trains come from the runtime's seeded generator), no
sequence input, and IF or MultiSpikeIF neurons only (``unrollable``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper

from ..artifact import SNNModel
from ..errors import ConfigError
from ..graph import default_opset, export_model, reached_from
from ..limits import as_timesteps
from ..neuron import OP_TYPE, body_nodes, inline_nodes
from ..neurons import MULTI_SPIKE_IF
from ..neurons import body_nodes as neuron_body_nodes

PER_STEP = ".per_step"
# the defaults, written out: onnx2torch 1.5 reads a missing ``reverse`` as 1
CUMSUM = {"exclusive": 0, "reverse": 0}


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


def _step_nodes(op_type: str, reset_to_zero: bool, inline: bool = False) -> list[onnx.NodeProto]:
    """One step of a layer's neuron, formal names x, membrane, threshold -> spikes,
    membrane_next: the IF body for its reset mode (``inline``: in the most widely supported
    operators, neuron.inline_nodes), or MultiSpikeIF's body (standard operators only)."""
    if op_type == MULTI_SPIKE_IF:
        return neuron_body_nodes(MULTI_SPIKE_IF)
    reset = "zero" if reset_to_zero else "subtract"
    return inline_nodes(reset) if inline else body_nodes(reset)


def _if_body(
    theta: np.ndarray, reset_to_zero: bool, name: str, shape: list, portable: bool, op_type: str = OP_TYPE
) -> gs.Graph:
    """The Scan body of one IF (or MultiSpikeIF) layer: the neuron's own step (its body_nodes,
    as the step form runs it), its names prefixed with the layer's and its threshold a constant.
    ``portable``: the spikes leave through an Identity, since the body reads them too (for the
    reset) and some runtimes (tract) refuse a body that reads its own scan output; onnxruntime
    does not, and runs the body 5-8% faster without the copy (cnn_bn, T = 32, batch 16)."""
    nodes = []
    for proto in _step_nodes(op_type, reset_to_zero):
        node = onnx.NodeProto()
        node.CopyFrom(proto)
        node.input[:] = [f"{name}.{t}" for t in proto.input]
        node.output[:] = [f"{name}.{t}" for t in proto.output]
        nodes.append(node)
    spikes_out = "spikes_out" if portable else "spikes"
    if portable:
        nodes.append(helper.make_node("Identity", [f"{name}.spikes"], [f"{name}.spikes_out"]))

    def value(t: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(f"{name}.{t}", onnx.TensorProto.FLOAT, shape)

    body = helper.make_graph(
        nodes,
        f"{name}.step",
        inputs=[value("membrane"), value("x")],
        outputs=[value("membrane_next"), value(spikes_out)],
        initializer=[numpy_helper.from_array(theta.astype(np.float32), f"{name}.threshold")],
    )
    return gs.import_onnx(helper.make_model(body))


class _Unroller:
    """Rewrites the step form's graph in place into the unrolled form (see ``unroll``)."""

    def __init__(
        self,
        snn: SNNModel,
        timesteps: int,
        scan: bool = True,
        portable: bool = True,
        varying_inputs: Sequence[str] = (),
    ):
        """``varying_inputs``: data inputs that come time-folded, [T*N, ...] (spike trains)."""
        self.snn = snn
        self.scan = scan
        self.portable = portable
        self.graph = gs.import_onnx(snn.proto)
        self.graph.functions = []
        self.tensors = self.graph.tensors()
        self.nodes = {n.name: n for n in self.graph.nodes}
        self.b = _Builder(self.graph, timesteps)
        states = [layer["membrane"] for layer in snn.layers]
        states += [pool[k] for pool in snn.pools for k in ("accumulated", "pooled")]
        self.varying = reached_from(self.graph, states + list(varying_inputs))
        # what no sample reaches (weights behind a DequantizeLinear) is the same for the whole batch
        self.per_sample = reached_from(self.graph, snn.input_names)
        self.folded: dict[str, gs.Tensor] = {}  # name of a [N, ...] tensor -> its [T*N, ...] version
        self.extra_inputs: list[gs.Tensor] = []
        self.extra_outputs: list[gs.Tensor] = []
        self.batch = snn.batch or "N"

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
        """An IF (or MultiSpikeIF) layer: a Scan over T of its input current, the neuron's own
        step as the body."""
        b = self.b
        x_t = b.time_major(self.fold(node.inputs[0]), node.name)
        v0 = b.const(self.snn.initial_membrane(layer), node.name)
        theta = np.asarray(self.snn.initializer(layer["threshold"]), np.float32)
        reset_to_zero = bool(node.attrs.get("reset_to_zero", 0))
        if self.scan:
            v_start = b.node("Expand", [v0, b.tail_shape(x_t, node.name)], hint=node.name)
            state_shape = [self.batch if not isinstance(d, int) else d for d in self.tensors[layer["membrane"]].shape]
            body = _if_body(theta, reset_to_zero, node.name, state_shape, self.portable, node.op)
            scan = {"body": body, "num_scan_inputs": 1}
            _, spikes_t = b.node("Scan", [v_start, x_t], scan, hint=node.name, outputs=2)
        else:
            theta_c = b.const(theta, node.name)
            spikes_t = self.steps_in_line(x_t, v0, theta_c, reset_to_zero, node.name, node.op)
        spikes = node.outputs[0]
        node.outputs.clear()
        node.inputs.clear()
        self.reroute(spikes, b.time_folded(spikes_t, node.name))

    def steps_in_line(
        self,
        x_t: gs.Tensor,
        v0: gs.Tensor,
        theta: gs.Tensor,
        reset_to_zero: bool,
        hint: str,
        op_type: str = OP_TYPE,
    ):
        """The T steps of one IF (or MultiSpikeIF) layer as plain nodes (neuron.inline_nodes,
        step after step), for converters without Scan (onnx2torch): [T, N, ...] spikes from
        [T, N, ...] currents."""
        b = self.b
        body = _step_nodes(op_type, reset_to_zero, inline=True)
        membrane, spikes = None, []
        for s in range(b.T):
            x_s = b.node("Slice", [x_t, b.const([s], hint), b.const([s + 1], hint), b.const([0], hint)], hint=hint)
            if membrane is None:  # [1, N, ...]
                membrane = b.node("Expand", [v0, b.node("Shape", [x_s], hint=hint, dtype=np.int64)], hint=hint)
            tensors = {"x": x_s, "membrane": membrane, "threshold": theta}
            for proto in body:
                attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
                outs = [b.tensor(f"{hint}.{name}", dtype=None) for name in proto.output]
                inputs = [tensors[name] for name in proto.input]
                b.graph.nodes.append(gs.Node(proto.op_type, f"{hint}.{proto.output[0]}_{s}", attrs, inputs, outs))
                tensors.update(zip(proto.output, outs))
            spikes.append(tensors["spikes"])
            membrane = tensors["membrane_next"]
        return b.node("Concat", spikes, {"axis": 0}, hint=hint)

    def pool(self, pool: dict) -> None:
        """A spiking max-pool: the pool of the accumulated input (CumSum over time), differenced."""
        b = self.b
        add, node, sub = self.nodes[pool["accumulate"]], self.nodes[pool["node"]], self.nodes[pool["difference"]]
        hint = node.name
        cumulative = b.node(
            "CumSum", [b.time_major(self.fold(add.inputs[1]), hint), b.const(np.int64(0), hint)], CUMSUM, hint=hint
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
        per_step_sum = b.node("CumSum", [b.time_major(steps, name), b.const(np.int64(0), name)], CUMSUM, hint=name)
        counts = np.arange(1, T + 1, dtype=np.float32).reshape((T,) + (1,) * rank)
        head_shape = [self.batch if not isinstance(d, int) else d for d in (head.shape or [self.batch])]
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
        """The unrolled graph: the data input (then ``extra_inputs``) in, the decoded outputs
        (then ``extra_outputs``) out; a subclass that cuts the graph open fills the extras."""
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
        self.graph.outputs = [t for name in self.snn.outputs for t in self.decoded(name)] + self.extra_outputs
        self.graph.inputs = [self.tensors[name] for name in self.snn.input_names] + self.extra_inputs
        return self.graph.cleanup().toposort(mode="nodes")


def unroll(
    snn: SNNModel, timesteps: int, check: bool = False, scan: bool = True, portable: bool = True
) -> onnx.ModelProto:
    """The unrolled form of ``snn`` for ``timesteps`` steps (see the module docstring);
    ``check`` runs ONNX's full checker on it. ``scan=False`` writes each IF layer's T steps as
    plain nodes instead of a Scan (for converters without Scan, such as onnx2torch; on cnn_bn
    at T = 32, batch 16: a 6% larger file, 17% slower in onnxruntime). ``portable=False`` is for
    onnxruntime alone (a Scan body that reads its own scan output, see ``_if_body``)."""
    timesteps = as_timesteps(timesteps)
    snn.require_neurons("unroll")
    if any(i.get("encoding", snn.encoding) != "direct" for i in snn.inputs):
        raise ConfigError("the unrolled form needs direct encoding (Poisson input is drawn by the step runtime)")
    if isinstance(snn.input_shape[0], int):
        raise ConfigError("the unrolled form needs a dynamic batch axis (this model's batch is fixed)")
    if not unrollable(snn):
        raise ConfigError(
            "the unrolled form runs IF and MultiSpikeIF neurons on a direct input only; this model has "
            "leaky neurons or a sequence input (run it in the step form)"
        )
    opset = onnx.helper.make_opsetid("", max(default_opset(snn.proto), 14))
    model = export_model(_Unroller(snn, timesteps, scan, portable).run(), [opset])
    # the step form's shapes name the batch where the time-folded tensors hold T*N: let runtimes infer
    del model.graph.value_info[:]
    if snn.head:
        append_head(model, snn.head_model())
    model.metadata_props.append(onnx.StringStringEntryProto(key="onnx2snn.unrolled_timesteps", value=str(timesteps)))
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def append_head(model: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """The trailing head after the decoded outputs (it reads ``<z>.decoded``): its outputs, under
    the ANN's names, become graph outputs too."""
    graph = model.graph
    graph.node.extend(head.graph.node)
    graph.initializer.extend(head.graph.initializer)
    graph.output.extend(head.graph.output)
    have = {i.domain for i in model.opset_import}
    model.opset_import.extend(i for i in head.opset_import if i.domain not in have and i.domain not in ("", "ai.onnx"))
    return model


def unrollable(snn: SNNModel) -> bool:
    """Whether ``unroll`` can build this artifact's unrolled form (neurons and input): IF and
    MultiSpikeIF layers, no sequence input."""
    ops = {node.op_type for node in snn.proto.graph.node if node.name in {layer["node"] for layer in snn.layers}}
    return ops <= {OP_TYPE, MULTI_SPIKE_IF} and not snn.sequence_input


def unrolled_bytes_per_sample(snn: SNNModel, timesteps: int) -> int:
    """Bytes one sample of the unrolled form needs at T = ``timesteps``. A heuristic,
    conservative on the reference networks (peak resident memory measured by
    benchmarks/speed.py): every state's [T, N, ...] sequence twice (a Scan's input current and
    its spikes) and two more copies of the largest."""
    sizes = [1]
    for value in snn.proto.graph.input:
        if value.name in snn.input_names:
            continue
        dims = value.type.tensor_type.shape.dim[1:]
        sizes.append(int(np.prod([d.dim_value if d.HasField("dim_value") else 1 for d in dims] or [1])))
    return 4 * timesteps * (2 * sum(sizes) + 2 * max(sizes))


def batch_for_budget(snn: SNNModel, timesteps: int, max_memory: int) -> int:
    """Samples per run of the unrolled form so that its time-folded tensors stay under
    ``max_memory`` bytes: 0 when not even one sample fits (the session then refuses, or falls
    back to the step form)."""
    return int(max_memory // unrolled_bytes_per_sample(snn, timesteps))
