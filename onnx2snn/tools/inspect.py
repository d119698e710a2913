"""onnx2snn inspect: what an SNN artifact holds."""

from __future__ import annotations

import argparse

from .args import ModelArg


class Inspect:
    name = "inspect"
    help = (
        "show an SNN artifact's IF layers, thresholds, states, metadata and conversion report; "
        "for a plain ANN, what conversion would do to each node"
    )

    groups = (ModelArg("the SNN artifact, or a plain ANN (.onnx)"),)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn
        from onnx2snn import describe_calibration, describe_threshold, format_report

        model = onnx2snn.load_onnx(args.model)
        if not onnx2snn.is_artifact(model):  # a plain ANN: what conversion would do
            print(f"ANN {args.model} (not converted yet): what conversion would do to each node\n")
            print(format_report(onnx2snn.analyze(model)))
            return 0
        snn = onnx2snn.SNNModel(model, source=args.model)
        meta = snn.metadata
        shapes = {v.name: v for v in snn.proto.graph.input}
        cal = meta["calibration"]
        print(f"SNN artifact {args.model}")
        print(f"  made by onnx2snn {meta['version']} (format {meta['format']})")
        for inp in snn.inputs:
            if inp.get("sequence"):
                dims = _dims(inp["shape"][:1] + ["T"] + inp["shape"][1:])
                print(f"  input      {inp['name']} {dims}   a sequence: one slice a step")
            else:
                encoding = inp.get("encoding", meta["encoding"])
                print(f"  input      {inp['name']} {_dims(inp['shape'])}   encoding {encoding}")
        for name in snn.outputs:
            act = meta.get("output_activations", {}).get(name)
            after = f", then {act['op']}(axis={act['axis']})" if act else ""
            print(f"  output     {name}   decoded: {meta['decode']} over steps{after}")
        if snn.head:
            reads = ", ".join(snn.head["inputs"])
            print(f"  head       {', '.join(snn.head['outputs'])}   from {reads} (after decoding)")
        ops = {n.name: n.op_type for n in snn.proto.graph.node}
        spikes = meta.get("spike_mode", "single")
        default = "MultiSpikeIF" if spikes == "multi" else "IF"  # an inlined layer has no node of its own
        kinds = ", ".join(sorted({ops.get(layer["node"], default) for layer in snn.layers})) or default
        print(f"  neurons    {kinds} ({spikes} spikes), reset by {meta['reset']}, v_init {meta['v_init']} x threshold")
        nir = meta.get("nir")
        if nir:  # read from NIR: nothing was calibrated, and a run takes the sequence's steps
            print(f"  read from  NIR {nir.get('file') or ''} (nir {nir.get('version')}), dt {nir['dt']:g}")
        else:
            print(f"  thresholds {describe_calibration(cal)}, {cal.get('samples') or 'unknown'} calibration samples")
            print(f"  timesteps  {meta['timesteps']} (default)")
        if meta.get("inlined"):
            print("  inlined    every neuron expanded into standard operators (export --inline)")
        for record in meta.get("training", []):  # spiking fine-tuning, one entry per run
            print(
                f"  trained    at T={record['timesteps']}, {record['epochs']} epoch{'s' * (record['epochs'] != 1)} "
                f"on {record['samples']} samples "
                f"of {record['data']}, final loss {record['final_loss']:.4f}"
            )
        print(f"\n  {len(snn.layers)} {kinds} layers (replaced or NIR op -> state input / output):")
        thresholds = snn.thresholds
        for layer in snn.layers:
            source = layer["op"] + (f"(0, {layer['clip_max']:g})" if layer.get("clip_max") is not None else "")
            shape = _value_dims(shapes[layer["membrane"]])
            print(f"    {layer['node']}  [{source}]  membrane {shape}")
            print(f"      state      {layer['membrane']} -> {layer['membrane_next']}")
            print(f"      threshold  {describe_threshold(thresholds[layer['node']])}")
        for pool in snn.pools:
            print(f"    {pool['node']}  [MaxPool on spikes]  states {pool['accumulated']}, {pool['pooled']}")
        if meta.get("report"):
            whole = any(r["fate"] == "kept" for r in meta["report"])  # older artifacts list every node
            print("\n  conversion report:" if whole else "\n  conversion report (every other node kept as it is):")
            print("\n".join("    " + line for line in format_report(meta["report"]).splitlines()))
        return 0


def _dims(shape: list) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"  # "T": a sequence's steps


def _value_dims(value) -> str:
    dims = value.type.tensor_type.shape.dim
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else "N" for d in dims) + "]"
