"""onnx2snn eval: accuracy of an SNN artifact at several T from one run."""

from __future__ import annotations

import argparse
import json
import sys

from .args import add_data_args, add_provider_args, add_quiet_arg, timesteps_list
from .format import percent


def print_report(report: dict) -> None:
    print(f"{report['samples']} samples on {report['provider']}")
    print(f"ANN accuracy: {percent(report['ann']['accuracy'])}")
    print(f"{'T':>6}  {'SNN acc':>8}  {'agree':>8}  {'seconds':>8}")
    for t, row in report["snn"].items():
        print(f"{t:>6}  {percent(row['accuracy']):>8}  {percent(row['agreement']):>8}  {row['seconds']:8.2f}")


class Eval:
    name = "eval"
    help = "accuracy and ANN agreement of an SNN at several timesteps, from one run"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="the SNN artifact (.onnx)")
        add_data_args(parser)
        parser.add_argument(
            "--timesteps",
            type=timesteps_list,
            default=[8, 16, 32, 64],
            help="T values, e.g. 8,16,32,64 or 1-128 (default 8,16,32,64)",
        )
        parser.add_argument("--ann", default=None, help="the ANN to compare with (default: rebuilt from the artifact)")
        parser.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON")
        add_provider_args(parser)
        add_quiet_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn
        from onnx2snn.artifact import write_atomic
        from onnx2snn.runtime.evaluate import evaluate

        snn = onnx2snn.load(args.model)
        data = onnx2snn.load_data(args.data)
        report = evaluate(
            snn,
            data,
            args.timesteps,
            ann=args.ann,
            limit=args.limit,
            batch_size=args.batch_size,
            providers=args.providers,
            progress=not args.quiet and sys.stderr.isatty(),
        )
        print_report(report)
        if args.json:
            write_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode())
        return 0
