"""onnx2snn unroll: the unrolled form of an SNN as a standalone ONNX file."""

from __future__ import annotations

import argparse

from .args import ModelArg, OutputArg, timesteps
from .paths import check_output


class Unroll:
    name = "unroll"
    help = "write the unrolled form (all T steps in one run, no Python loop) as a standalone ONNX file"
    groups = (ModelArg(), OutputArg("where to write the unrolled .onnx"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timesteps", type=timesteps, default=None, help="T (default: the artifact's)")
        parser.add_argument(
            "--no-scan",
            action="store_true",
            help="each neuron's T steps as plain nodes rather than a Scan (for converters without Scan, "
            "such as onnx2torch)",
        )

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        check_output(args.output, "output", [args.model])
        snn = onnx2snn.load(args.model)
        steps = args.timesteps or snn.timesteps
        model = onnx2snn.unroll(snn, steps, check=True, scan=not args.no_scan)
        onnx2snn.save_onnx(model, args.output)
        head = snn.outputs[0]
        print(f"unrolled {args.model} for T={steps} -> {args.output}")
        inputs = ", ".join(snn.input_names)
        print(f"  inputs {inputs}; outputs {head}.decoded (after T steps), {head}.per_step (every t <= T)")
        return 0
