"""onnx2snn eval: accuracy of SNN artifacts at several T from one run each."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .args import (
    add_data_args,
    add_provider_args,
    add_quiet_arg,
    positive_int,
    preprocessing,
    session_args,
    timesteps_list,
)
from .format import percent


def print_report(report: dict, title: str | None = None) -> None:
    if title:
        print(title)
    print(f"{report['samples']} samples on {report['provider']}")
    print(f"ANN accuracy: {percent(report['ann']['accuracy'])}")
    print(f"{'T':>6}  {'SNN acc':>8}  {'agree':>8}  {'seconds':>8}")
    for t, row in report["snn"].items():
        print(f"{t:>6}  {percent(row['accuracy']):>8}  {percent(row['agreement']):>8}  {row['seconds']:8.2f}")


class Eval:
    name = "eval"
    help = "accuracy and ANN agreement of SNNs at several timesteps, from one run each"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "models", nargs="+", metavar="model", help="SNN artifacts (.onnx); several give one curve each"
        )
        add_data_args(parser)
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use the first N samples")
        parser.add_argument(
            "--timesteps",
            type=timesteps_list,
            default=[8, 16, 32, 64],
            help="T values, e.g. 8,16,32,64 or 1-128 (default 8,16,32,64)",
        )
        parser.add_argument("--ann", default=None, help="the ANN to compare with (default: rebuilt from each artifact)")
        parser.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON")
        parser.add_argument(
            "--plot",
            default=None,
            metavar="PATH",
            help="write a PNG plot of accuracy vs T (with --activity also PATH_activity.png)",
        )
        parser.add_argument(
            "--encoding", choices=["direct", "poisson"], default=None, help="input encoding (default: the artifact's)"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of Poisson input (0)")
        parser.add_argument(
            "--activity",
            action="store_true",
            help="also firing rates per layer and synaptic operations vs the ANN's MACs, at the largest T "
            "(one more run, step form)",
        )
        add_provider_args(parser)
        add_quiet_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn
        from onnx2snn.artifact import write_atomic
        from onnx2snn.runtime.activity import activity, format_activity
        from onnx2snn.runtime.evaluate import evaluate, model_inputs

        snns = [onnx2snn.load(path) for path in args.models]  # every model is checked before any work
        reports = {}
        for path, snn in zip(args.models, snns):
            data = onnx2snn.load_data(args.data, preprocessing=preprocessing(args, snn.metadata.get("preprocessing")))
            report = evaluate(
                snn,
                data,
                args.timesteps,
                ann=args.ann,
                limit=args.limit,
                progress=not args.quiet and sys.stderr.isatty(),
                encoding=args.encoding,
                seed=args.seed,
                **session_args(args),
            )
            print_report(report, title=path if len(snns) > 1 else None)
            if args.activity:
                _, x = model_inputs(snn, data, args.limit)
                report["activity"] = activity(
                    snn,
                    x,
                    max(args.timesteps),
                    progress=not args.quiet and sys.stderr.isatty(),
                    encoding=args.encoding,
                    seed=args.seed,
                    **session_args(args),  # in the step form, whatever --form says
                )
                print(format_activity(report["activity"]))
            reports[path] = report
        if args.json:
            payload = next(iter(reports.values())) if len(reports) == 1 else reports
            write_atomic(args.json, (json.dumps(payload, indent=2) + "\n").encode())
        if args.plot:
            plot_reports(reports, args.plot)
            if args.activity:
                from onnx2snn.plot import plot_activity

                plot = Path(args.plot)
                for path, report in reports.items():
                    suffix = f"_{Path(path).stem}" if len(reports) > 1 else ""
                    name = plot.with_name(f"{plot.stem}_activity{suffix}{plot.suffix or '.png'}")
                    plot_activity(report["activity"], name, f"SNN activity, {Path(path).stem}")
        return 0


def plot_reports(reports: dict[str, dict], path: str, title: str = "SNN accuracy vs timesteps") -> None:
    from onnx2snn.plot import plot_accuracy

    curves, anns = {}, {}
    for name, report in reports.items():
        label = Path(name).stem
        method = report.get("method")
        label = f"{label} ({method})" if method else label
        if report["ann"]["accuracy"] is None:
            curves[label + " agreement"] = {int(t): row["agreement"] for t, row in report["snn"].items()}
        else:
            curves[label] = {int(t): row["accuracy"] for t, row in report["snn"].items()}
            anns[Path(name).stem] = report["ann"]["accuracy"]
    plot_accuracy(curves, path, anns, title)
