"""onnx2snn unroll: the unrolled form of an SNN as a standalone ONNX file."""

from __future__ import annotations

import argparse

from .args import positive_int


class Unroll:
    name = "unroll"
    help = "write the unrolled form (all T steps in one run, no Python loop) as a standalone ONNX file"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="the SNN artifact (.onnx)")
        parser.add_argument("-o", "--output", required=True, help="where to write the unrolled .onnx")
        parser.add_argument("--timesteps", type=positive_int, default=None, help="T (default: the artifact's)")

    def run(self, args: argparse.Namespace) -> int:
        import onnx

        import onnx2snn
        from onnx2snn.artifact import write_atomic
        from onnx2snn.runtime.unrolled import PER_STEP, unroll

        snn = onnx2snn.load(args.model)
        steps = args.timesteps or snn.timesteps
        model = unroll(snn, steps)
        onnx.checker.check_model(model, full_check=True)
        write_atomic(args.output, model.SerializeToString())
        head = snn.outputs[0]
        print(f"unrolled {args.model} for T={steps} -> {args.output}")
        print(f"  input {snn.input_name}; outputs {head}.decoded (after T steps), {head}{PER_STEP} (every t <= T)")
        return 0
