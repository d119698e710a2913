"""A NIR graph as an onnx2snn artifact that plain onnxruntime runs.

NIR's neurons are continuous-time; a simulator discretizes them, and the ones that write NIR
do so differently. The artifact fixes the discretization in its neurons' attributes:

- ``spike_mode``: ``single`` (at most one spike a step: NIR's ``z = [v > v_threshold]``,
  snnTorch, Norse) or ``multi`` (as many spikes as thresholds crossed: sinabs' IAF);
- ``reset``: ``subtract`` (``v - v_threshold``: nir 1.0.4's IF and LIF, sinabs) or ``zero``
  (``v_reset`` = 0: nir 1.0.5 on, snnTorch's and Norse's imports);
- ``dt``: the forward-Euler step (1 for sinabs; snnTorch writes ``tau = dt / (1 - beta)`` with
  dt = 1e-4).

Each defaults to what the file says where it says it (files written by onnx2snn record all
three), else to NIR's own reading of the file's version. IF becomes ``onnx2snn.LIF`` with
``leak=0``, LIF ``onnx2snn.LIF``, CubaLIF ``onnx2snn.CubaLIF`` (neurons.py); Affine/Linear,
Conv1d/Conv2d, SumPool2d/AvgPool2d, Flatten and Scale their ONNX counterparts; several edges
into one node are summed. Other nodes are refused by name.

The artifact takes a sequence input: ``x`` of shape [N, T, ...], one input per step, and its
output is decoded as the mean over steps of the graph's output (spike rates of an output layer).
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..artifact import DEFAULT_BATCH, SNNModel, add_initial_membranes, attach_neuron
from ..errors import ConfigError, ConversionError, ModelError
from ..graph import IR_VERSION
from ..neuron import DOMAIN, DOMAIN_VERSION, SPIKE_MODES
from ..neurons import CUBA_LIF, LIF
from ..neurons import node as neuron_node
from .export import _nir

RESETS = ("subtract", "zero")
OPSET = 17
BATCH = DEFAULT_BATCH  # the one symbol of every batch axis


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split(".")[:3])
    except ValueError:
        return (0,)


def read_nir(path: str | os.PathLike) -> tuple[Any, str | None]:
    """The graph in a NIR file and the nir version that wrote it (ModelError if unreadable)."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        graph = nir.read(str(path))
    except Exception as e:
        raise ModelError(f"{path}: not a NIR graph ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from e
    try:  # the nir version that wrote the file (a dataset beside the graph)
        import h5py

        with h5py.File(str(path), "r") as f:
            raw = f["version"][()]
        version = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:
        version = None
    return graph, version


def conventions(
    graph: Any, version: str | None, spike_mode: str | None, reset: str | None, dt: float | None
) -> dict[str, Any]:
    """How the file's neurons are discretized: what the caller says, else what the file says."""
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (graph.metadata or {}).items()}
    recorded = meta.get("producer") == "onnx2snn"
    spike_mode = spike_mode or (meta.get("spike_mode") if recorded else None) or "single"
    # nir 1.0.4 resets by subtraction; later versions reset to v_reset (their neurons carry one)
    has_v_reset = any(getattr(node, "v_reset", None) is not None for node in graph.nodes.values())
    later = _version_tuple(version) > (1, 0, 4) if version is not None else has_v_reset
    default_reset = "zero" if later else "subtract"
    reset = reset or (meta.get("reset") if recorded else None) or default_reset
    if dt is None:
        dt = float(meta.get("dt", 1.0)) if recorded else 1.0
    if spike_mode not in SPIKE_MODES:
        raise ConfigError(f"spike_mode must be one of {', '.join(SPIKE_MODES)}, got {spike_mode!r}")
    if reset not in RESETS:
        raise ConfigError(f"reset must be one of {', '.join(RESETS)}, got {reset!r}")
    if not dt > 0:
        raise ConfigError(f"dt must be positive, got {dt}")
    # NIR fires above the threshold; onnx2snn's IF (and files it writes) at it too
    at_threshold = recorded and meta.get("firing") == "v >= v_threshold"
    return {"spike_mode": spike_mode, "reset": reset, "dt": float(dt), "at_threshold": at_threshold, "version": version}


def _array(value: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float32)
    return np.broadcast_to(array, shape).astype(np.float32) if shape is not None else array


def _shape(types: dict | None) -> tuple[int, ...] | None:
    if not types:
        return None
    value = next(iter(types.values()))
    if value is None:
        return None
    return tuple(int(d) for d in np.asarray(value).reshape(-1))


class _Builder:
    def __init__(self, graph: Any, conv: dict[str, Any]):
        self.nir = _nir()
        self.g = graph
        self.conv = conv
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.layers: list[dict[str, Any]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # NIR node -> one sample's output shape
        self.problems: list[ConversionError] = []
        self.tensor_of: dict[str, str] = {}  # NIR node -> the ONNX tensor of its output

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def int_const(self, name: str, value: list[int]) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def order(self) -> list[str]:
        """Nodes in an order where every node comes after its sources (Kahn's algorithm)."""
        nodes, edges = self.g.nodes, self.g.edges
        indegree = {n: 0 for n in nodes}
        for _, b in edges:
            indegree[b] += 1
        ready = deque(n for n in nodes if indegree[n] == 0)
        order = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for a, b in edges:
                if a == n:
                    indegree[b] -= 1
                    if indegree[b] == 0:
                        ready.append(b)
        if len(order) != len(nodes):
            stuck = sorted(set(nodes) - set(order))
            raise ConversionError(f"recurrent connections are not read yet (a cycle through {', '.join(stuck)})")
        return order

    def summed(self, name: str) -> str | None:
        """The tensor entering NIR node ``name``: the sum of its incoming edges."""
        sources = [a for a, b in self.g.edges if b == name]
        tensors = [self.tensor_of[s] for s in sources]
        if not tensors:
            return None
        total = tensors[0]
        for k, t in enumerate(tensors[1:]):
            total = self.op("Add", [total, t], f"{name}.sum{k}")
        shapes = {self.shapes[s] for s in sources}
        if len(shapes) != 1:
            raise ConversionError(f"node '{name}': its inputs differ in shape ({sorted(shapes)})")
        self.in_shape = shapes.pop()
        return total

    def without_batch(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """NIR's shapes leave the batch out, but some writers (Norse) keep it: a leading 1 one
        axis more than the layers reading the input take is dropped."""
        nir = self.nir
        ranks = {nir.Affine: 1, nir.Linear: 1, nir.Conv1d: 2, nir.Conv2d: 3}
        readers = [self.g.nodes[b] for a, b in self.g.edges if a == name]
        wanted = {ranks[type(r)] for r in readers if type(r) in ranks}
        if len(shape) > 1 and shape[0] == 1 and wanted == {len(shape) - 1}:
            return shape[1:]
        return shape

    def neuron(self, name: str, node: Any, x: str, shape: tuple[int, ...]) -> None:
        nir = self.nir
        c = self.conv
        full = lambda v: _array(v, shape)  # noqa: E731
        common = {
            "dt": c["dt"],
            "multi_spike": int(c["spike_mode"] == "multi"),
            "reset_to_zero": int(c["reset"] == "zero"),
            "fire_at_threshold": int(c["at_threshold"]),
        }
        if getattr(node, "v_reset", None) is not None and np.any(_array(node.v_reset)) and c["reset"] == "zero":
            raise ConversionError(f"node '{name}': a nonzero v_reset is not read yet")
        layer = {
            "node": name,
            "op": type(node).__name__,
            "clip_max": None,
            "membrane": f"{name}.membrane",
            "membrane_next": f"{name}.membrane_next",
            "threshold": f"{name}.v_threshold",
            "current_shift": None,
            "current_correction": None,
            "membrane_init": None,
        }
        threshold = self.const(f"{name}.v_threshold", full(node.v_threshold))
        if isinstance(node, nir.CubaLIF):
            params = [
                self.const(f"{name}.{k}", full(getattr(node, k))) for k in ("tau_syn", "tau_mem", "r", "v_leak", "w_in")
            ]
            layer.update(current=f"{name}.current", current_next=f"{name}.current_next")
            ins = [x, layer["membrane"], layer["current"], threshold, *params]
            outs = [f"{name}.out", layer["membrane_next"], layer["current_next"]]
            self.nodes.append(neuron_node(CUBA_LIF, name, ins, outs, **common))
            states = ["membrane", "current"]
        else:
            leak = isinstance(node, nir.LIF)
            tau = full(node.tau) if leak else full(1.0)
            v_leak = full(node.v_leak) if leak else full(0.0)
            params = [self.const(f"{name}.tau", tau), self.const(f"{name}.r", full(node.r))]
            params.append(self.const(f"{name}.v_leak", v_leak))
            ins = [x, layer["membrane"], threshold, *params]
            outs = [f"{name}.out", layer["membrane_next"]]
            self.nodes.append(neuron_node(LIF, name, ins, outs, leak=int(leak), **common))
            states = ["membrane"]
        for state in states:
            dims = [BATCH, *shape]
            self.inputs.append(helper.make_tensor_value_info(layer[state], TensorProto.FLOAT, dims))
            self.outputs.append(helper.make_tensor_value_info(layer[f"{state}_next"], TensorProto.FLOAT, dims))
        self.layers.append(layer)

    def visit(self, name: str) -> None:
        nir = self.nir
        node = self.g.nodes[name]
        out = name if isinstance(node, nir.Input) else f"{name}.out"
        self.tensor_of[name] = out
        if isinstance(node, nir.Input):
            shape = _shape(node.input_type)
            if shape is None:
                raise ConversionError(f"node '{name}': the input's shape is not given")
            shape = self.without_batch(name, shape)
            self.inputs.insert(0, helper.make_tensor_value_info(out, TensorProto.FLOAT, [BATCH, *shape]))
            self.input_name, self.input_shape = out, shape
            self.shapes[name] = shape
            return
        x = self.summed(name)
        if x is None:
            raise ConversionError(f"node '{name}' ({type(node).__name__}): no edge enters it")
        shape = self.in_shape
        if isinstance(node, nir.Output):
            self.op("Identity", [x], out)
            self.shapes[name] = shape
            value = helper.make_tensor_value_info(out, TensorProto.FLOAT, [BATCH, *shape])
            self.outputs.insert(len(self.output_names), value)
            self.output_names.append(out)
            return
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = _array(node.weight)
            if len(shape) != 1 or weight.ndim != 2 or weight.shape[1] != shape[0]:
                raise ConversionError(f"node '{name}' ({type(node).__name__}): weight {weight.shape} on input {shape}")
            ins = [x, self.const(f"{name}.weight", weight)]
            if isinstance(node, nir.Affine):
                ins.append(self.const(f"{name}.bias", _array(node.bias)))
            self.op("Gemm", ins, out, transB=1)
            self.shapes[name] = (weight.shape[0],)
        elif isinstance(node, (nir.Conv1d, nir.Conv2d)):
            self.conv_node(name, node, x, shape)
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            kernel = [int(k) for k in np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), (2,))]
            stride = [int(k) for k in np.broadcast_to(np.asarray(node.stride).reshape(-1), (2,))]
            pad = [int(k) for k in np.broadcast_to(np.asarray(node.padding).reshape(-1), (2,))]
            pooled = self.op(
                "AveragePool",
                [x],
                f"{name}.avg",
                kernel_shape=kernel,
                strides=stride,
                pads=pad + pad,
                count_include_pad=1,
            )
            if isinstance(node, nir.SumPool2d):
                self.op("Mul", [pooled, self.const(f"{name}.area", np.float32(kernel[0] * kernel[1]))], out)
            else:
                self.op("Identity", [pooled], out)
            h = (shape[1] + 2 * pad[0] - kernel[0]) // stride[0] + 1
            w = (shape[2] + 2 * pad[1] - kernel[1]) // stride[1] + 1
            self.shapes[name] = (shape[0], h, w)
        elif isinstance(node, nir.Flatten):
            rank = len(shape)
            start = int(node.start_dim) % rank
            end = int(node.end_dim) % rank
            new = shape[:start] + (int(np.prod(shape[start : end + 1])),) + shape[end + 1 :]
            self.op("Reshape", [x, self.int_const(f"{name}.shape", [-1, *new])], out)
            self.shapes[name] = new
        elif isinstance(node, nir.Scale):
            self.op("Mul", [x, self.const(f"{name}.scale", _array(node.scale, shape))], out)
            self.shapes[name] = shape
        elif isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
            self.neuron(name, node, x, shape)
            self.shapes[name] = shape
        else:
            raise ConversionError(f"node '{name}' ({type(node).__name__}): not read yet", name, type(node).__name__)

    def conv_node(self, name: str, node: Any, x: str, shape: tuple[int, ...]) -> None:
        weight = _array(node.weight)
        spatial = weight.ndim - 2
        as_list = lambda v: [int(k) for k in np.broadcast_to(np.asarray(v).reshape(-1), (spatial,))]  # noqa: E731
        stride, dilation = as_list(node.stride), as_list(node.dilation)
        if isinstance(node.padding, str):
            if node.padding == "valid":
                pad = [0] * spatial
            else:  # same: symmetric where the kernel allows it
                total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
                if any(t % 2 for t in total) or any(s != 1 for s in stride):
                    raise ConversionError(f"node '{name}': padding 'same' that is not symmetric")
                pad = [t // 2 for t in total]
        else:
            pad = as_list(node.padding)
        bias = _array(node.bias) if node.bias is not None else np.zeros(weight.shape[0], np.float32)
        self.op(
            "Conv",
            [
                x,
                self.const(f"{name}.weight", weight),
                self.const(f"{name}.bias", np.broadcast_to(bias, (weight.shape[0],))),
            ],
            f"{name}.out",
            strides=stride,
            pads=pad + pad,
            dilations=dilation,
            group=int(node.groups),
        )
        sizes = [
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(shape[1:], pad, dilation, weight.shape[2:], stride)
        ]
        self.shapes[name] = (weight.shape[0], *sizes)

    def build(self) -> onnx.ModelProto:
        self.output_names: list[str] = []
        order = self.order()
        for name in order:
            try:
                self.visit(name)
            except ConversionError as e:
                self.problems.append(e)
                break
        if self.problems:
            raise self.problems[0]
        if not self.output_names:
            raise ConversionError("the NIR graph has no Output node")
        graph = helper.make_graph(self.nodes, "nir", self.inputs, self.outputs, initializer=self.inits)
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
            ir_version=IR_VERSION,
            producer_name="onnx2snn (from NIR)",
        )


def from_nir(
    graph: Any,
    spike_mode: str | None = None,
    reset: str | None = None,
    dt: float | None = None,
    version: str | None = None,
    source: str | None = None,
) -> SNNModel:
    """The artifact of a NIR graph (a ``nir.NIRGraph`` or a path to a ``.nir`` file); see the
    module docstring for ``spike_mode``, ``reset`` and ``dt`` (None: what the file says)."""
    if isinstance(graph, (str, os.PathLike)):
        source = str(graph)
        graph, version = read_nir(graph)
    conv = conventions(graph, version, spike_mode, reset, dt)
    builder = _Builder(graph, conv)
    model = builder.build()
    metadata = {
        "source": "nir",
        "inputs": [
            {"name": builder.input_name, "shape": [None, *builder.input_shape], "encoding": "direct", "sequence": True}
        ],
        "batch": BATCH,
        "outputs": builder.output_names,
        "output_activations": {},
        "decode": "mean",
        "encoding": "direct",
        "timesteps": 0,  # a sequence input: as many steps as the sequence has
        "reset": conv["reset"],
        "v_init": 0.0,
        "spike_mode": conv["spike_mode"],
        "nir": {"dt": conv["dt"], "version": conv["version"], "file": source},
        "layers": builder.layers,
        "pools": [],
    }
    # NIR's neurons start at 0: each membrane's initial value a constant output, as in every artifact
    for layer in builder.layers:
        layer["membrane_init"] = f"{layer['node']}.membrane_init"
    add_initial_membranes(model, {layer["membrane_init"]: np.zeros((), np.float32) for layer in builder.layers})
    model = attach_neuron(model, metadata)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"the model read from NIR fails the ONNX checker: {str(e).splitlines()[0]}") from e
    return SNNModel(model, source)
