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
        try:
            snn = onnx2snn.load(model)
        except onnx2snn.ModelError:  # a plain ANN: what conversion would do
            print(f"ANN {args.model} (not converted yet): what conversion would do to each node\n")
            print(format_report(onnx2snn.analyze(model)))
            return 0
        meta = snn.metadata
        shapes = {v.name: v for v in snn.proto.graph.input}
        cal = meta["calibration"]
        print(f"SNN artifact {args.model}")
        print(f"  made by onnx2snn {meta['version']} (format {meta['format']})")
        print(f"  input      {snn.input_name} {_dims(snn.input_shape)}   encoding {meta['encoding']}")
        for name in snn.outputs:
            act = meta.get("output_activations", {}).get(name)
            after = f", then {act['op']}(axis={act['axis']})" if act else ""
            print(f"  output     {name}   decoded: {meta['decode']} over steps{after}")
        print(f"  neurons    IF, reset by {meta['reset']}, v_init {meta['v_init']} x threshold")
        print(f"  thresholds {describe_calibration(cal)}, {cal['samples']} calibration samples")
        print(f"  timesteps  {meta['timesteps']} (default)")
        for record in meta.get("training", []):  # spiking fine-tuning, one entry per run
            print(
                f"  trained    at T={record['timesteps']}, {record['epochs']} epoch{'s' * (record['epochs'] != 1)} "
                f"on {record['samples']} samples "
                f"of {record['data']}, final loss {record['final_loss']:.4f}"
            )
        print(f"\n  {len(snn.layers)} IF layers (replaced op -> state input / output):")
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
            print("\n  conversion report:")
            print("\n".join("    " + line for line in format_report(meta["report"]).splitlines()))
        return 0


def _dims(shape: list) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _value_dims(value) -> str:
    dims = value.type.tensor_type.shape.dim
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else "N" for d in dims) + "]"
