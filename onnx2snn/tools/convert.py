"""onnx2snn convert: ANN.onnx -> SNN.onnx."""

from __future__ import annotations

import argparse

from .args import add_data_args, positive_int, preprocessing
from .format import describe_threshold


class Convert:
    name = "convert"
    help = "convert a ReLU ANN (ONNX) into an SNN artifact (ONNX)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="the ANN, an .onnx file")
        parser.add_argument("-o", "--output", required=True, help="where to write the SNN .onnx")
        parser.add_argument("--method", default="max", help="threshold calibration: max | percentile:P (default max)")
        parser.add_argument("--per-channel", action="store_true", help="one threshold per channel instead of per layer")
        parser.add_argument("--timesteps", type=positive_int, default=32, help="default T stored in the artifact (32)")
        parser.add_argument(
            "--reset", choices=["subtract", "zero"], default="subtract", help="membrane reset (subtract)"
        )
        parser.add_argument("--v-init", type=float, default=0.5, help="initial membrane, fraction of threshold (0.5)")
        parser.add_argument(
            "--calibration-samples",
            type=positive_int,
            default=None,
            metavar="N",
            help="calibrate on a seeded random subset of N samples",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the calibration subset (0)")
        add_data_args(parser, "--calibration", "calibration data (train split by default)")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        model = onnx2snn.load_onnx(args.model)  # a bad model file is reported before the data is read
        calibration = onnx2snn.load_data(args.calibration, split="train", preprocessing=preprocessing(args))
        snn = onnx2snn.convert(
            model,
            calibration,
            method=args.method,
            per_channel=args.per_channel,
            timesteps=args.timesteps,
            reset=args.reset,
            v_init=args.v_init,
            calibration_samples=args.calibration_samples,
            seed=args.seed,
        )
        path = snn.save(args.output)
        cal = snn.metadata["calibration"]
        print(
            f"converted {args.model} -> {path}: {len(snn.layers)} IF layers, method {cal['method']}"
            f"{' per channel' if cal['per_channel'] else ''}, {cal['samples']} calibration samples"
        )
        for node, theta in snn.thresholds.items():
            print(f"  {node:40s} threshold {describe_threshold(theta)}")
        return 0
