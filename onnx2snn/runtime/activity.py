"""How much an SNN computes: firing rates and synaptic operations.

Per IF layer: its firing rate (spikes per neuron per step) and the share of its neurons that
never fired. Per weighted layer (Conv, ConvTranspose, Gemm, MatMul with a weight initializer):
the ANN does all its multiply-accumulates (MACs) once per sample; the SNN, at every step, one
synaptic operation (SOP, an accumulate) for each synapse that a nonzero input reaches:
``nonzero inputs x MACs / inputs``. A weighted layer no neuron reaches (the first layer under
direct encoding) runs once per sample and counts its MACs once. The ratio of the SNN's
operations over T steps to the ANN's MACs is the usual first estimate of what the SNN saves on
hardware where an accumulate costs less than a multiply-accumulate and silence costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from ..artifact import SNNModel, load
from ..data import Inputs, num_samples
from ..errors import ConfigError
from ..graph import reached_from, shape_of
from ..limits import as_timesteps
from .inputs import input_encodings, model_feeds
from .progress import progress_bar
from .session import SNNSession

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _macs(node: gs.Node, weight: tuple[int, ...]) -> int | None:
    """Multiply-accumulates of one weighted node for one sample (None when a shape is unknown)."""
    inp, out = shape_of(node.inputs[0]), shape_of(node.outputs[0])
    if not inp or not out or None in inp[1:] or None in out[1:]:
        return None
    if node.op == "Conv":  # each output: Cin/groups x kernel products
        return int(np.prod(out[1:]) * np.prod(weight[1:]))
    if node.op == "ConvTranspose":  # each input: Cout/groups x kernel products
        return int(np.prod(inp[1:]) * np.prod(weight[1:]))
    if node.op == "Gemm":
        return int(np.prod(out[1:]) * weight[node.attrs.get("transB", 0)])  # x its input features
    return int(np.prod(out[1:]) * weight[-2])  # MatMul


def _dequantized(t: gs.Tensor) -> bool:
    producer = t.inputs[0] if t.inputs else None
    return producer is not None and producer.op == "DequantizeLinear" and t.shape is not None and None not in t.shape


def _weighted_layers(graph: gs.Graph, varying: set[str]) -> list[tuple[gs.Node, int, bool]]:
    """(node, MACs per sample, whether spikes reach its input) of every weighted layer."""
    weighted = []
    for node in graph.nodes:
        # a weight initializer, or integer weights behind a DequantizeLinear (shape known either way)
        weight = node.inputs[1] if node.op in WEIGHTED and len(node.inputs) > 1 else None
        if weight is not None and (isinstance(weight, gs.Constant) or _dequantized(weight)):
            macs = _macs(node, tuple(weight.shape))
            if macs is not None:
                weighted.append((node, macs, node.inputs[0].name in varying))
    return weighted


def macs_per_sample(graph: gs.Graph) -> int:
    """The ANN's multiply-accumulates for one sample (weighted layers of known shape)."""
    return sum(macs for _, macs, _ in _weighted_layers(graph, set()))


def _count(session: SNNSession, x: np.ndarray, steps: int, spikes: dict[str, str], inputs: dict[str, str], bar):
    """Over all samples and steps: spikes fired per IF layer, neurons that never fired, and the
    nonzero share of each spiking weighted layer's input summed per sample."""
    fired = {name: 0 for name in spikes}
    silent = {name: 0 for name in spikes}
    nonzero = {name: 0.0 for name in inputs}
    ever: dict[str, np.ndarray] = {}
    for _, n, t, values in session.iter_steps(x, steps):
        for name, tensor in spikes.items():
            on = values[tensor] > 0  # spikes carry the (positive) threshold as amplitude
            fired[name] += int(np.count_nonzero(on))
            ever[name] = on if t == 0 else ever[name] | on
            if t == steps - 1:
                silent[name] += int(ever[name].size - np.count_nonzero(ever[name]))
        for name, tensor in inputs.items():
            value = values[tensor]
            nonzero[name] += np.count_nonzero(value) / (value.size / n)
        bar.update(n)
    bar.close()
    return fired, silent, nonzero


def activity(
    snn: SNNModel | str | os.PathLike,
    x: Inputs,
    timesteps: int | None = None,
    batch_size: int = 256,
    providers: str | Sequence[str] | None = None,
    progress: bool = False,
    **session_kwargs: Any,
) -> dict[str, Any]:
    """Firing rates and synaptic operations of ``snn`` on ``x`` over ``timesteps`` steps.

    Returns ``{"samples", "timesteps", "rate", "layers": [{"node", "neurons", "rate",
    "silent"}], "synapses": [{"node", "op", "macs", "sops", "once"}], "ann_macs", "snn_ops",
    "ops_ratio"}``: ``neurons`` per sample; ``rate`` spikes per neuron per step (``rate`` at the
    top: over all neurons); ``silent`` the share of neurons that never fired; ``macs`` the ANN's
    per sample; ``sops`` the SNN's per sample over all T steps (its MACs when ``once``);
    ``snn_ops`` their sum and ``ops_ratio`` = snn_ops / ann_macs. ``progress`` shows a progress
    bar. More keyword arguments go to SNNSession (always the step form: it is the one that shows
    each step's spikes)."""
    snn = snn if isinstance(snn, SNNModel) else load(snn)
    steps = as_timesteps(snn.timesteps if timesteps is None else timesteps)
    x = model_feeds(snn, x)
    if not snn.layers:
        raise ConfigError("the model has no IF neurons: nothing fires")
    snn.require_neurons("activity")
    graph = gs.import_onnx(snn.proto)
    nodes = {n.name: n for n in graph.nodes}
    spikes = {layer["node"]: nodes[layer["node"]].outputs[0] for layer in snn.layers}

    sources = [layer["membrane"] for layer in snn.layers]
    encodings = input_encodings(snn, session_kwargs.get("encoding"))
    sources += [name for name, encoding in encodings.items() if encoding == "poisson"]
    weighted = _weighted_layers(graph, reached_from(graph, sources))
    inputs = {node.name: node.inputs[0].name for node, _, spiking in weighted if spiking}

    record = [t.name for t in spikes.values()] + list(inputs.values())
    options = {**session_kwargs, "form": "step", "record": record}
    session = SNNSession(snn, providers=providers, batch_size=batch_size, **options)
    bar = progress_bar(num_samples(x) * steps, progress)
    fired, silent, nonzero = _count(session, x, steps, {k: t.name for k, t in spikes.items()}, inputs, bar)

    samples = num_samples(x)
    layers = []
    for name, tensor in spikes.items():
        size = int(np.prod(shape_of(tensor)[1:]))
        rate = fired[name] / (samples * size * steps)
        layers.append({"node": name, "neurons": size, "rate": rate, "silent": silent[name] / (samples * size)})
    synapses = [
        {
            "node": node.name,
            "op": node.op,
            "macs": macs,
            "sops": macs * nonzero[node.name] / samples if spiking else macs,
            "once": not spiking,
        }
        for node, macs, spiking in weighted
    ]
    ann_macs = sum(s["macs"] for s in synapses)
    snn_ops = sum(s["sops"] for s in synapses)
    return {
        "samples": samples,
        "timesteps": steps,
        "rate": sum(fired.values()) / (samples * sum(layer["neurons"] for layer in layers) * steps),
        "layers": layers,
        "synapses": synapses,
        "ann_macs": ann_macs,
        "snn_ops": snn_ops,
        "ops_ratio": snn_ops / ann_macs if ann_macs else None,
    }


def format_activity(report: dict[str, Any]) -> str:
    """The activity report as aligned text."""
    width = max(len(row["node"]) for row in report["layers"] + report["synapses"])
    lines = [
        f"activity over {report['timesteps']} steps, {report['samples']} samples: "
        f"{report['rate']:.4f} spikes per neuron per step",
        f"  {'IF layer':{width}s}  {'neurons':>9s}  {'rate':>7s}  {'silent':>7s}",
    ]
    for row in report["layers"]:
        lines.append(f"  {row['node']:{width}s}  {row['neurons']:9,d}  {row['rate']:7.4f}  {100 * row['silent']:6.1f}%")
    lines.append(f"  {'weighted layer':{width}s}  {'ANN MACs':>12s}  {'SNN ops (T steps)':>18s}")
    for row in report["synapses"]:
        note = "  (analog input: MACs, once)" if row["once"] else ""
        lines.append(f"  {row['node']:{width}s}  {row['macs']:12,d}  {row['sops']:18,.0f}{note}")
    if report["ops_ratio"] is not None:
        lines.append(
            f"  per sample: ANN {report['ann_macs']:,} MACs, SNN {report['snn_ops']:,.0f} operations "
            f"over {report['timesteps']} steps ({report['ops_ratio']:.2f}x)"
        )
    return "\n".join(lines)
