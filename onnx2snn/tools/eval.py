"""onnx2snn eval: accuracy of SNN artifacts at several T from one run each."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import DataArgs, JsonArg, QuietArg, RayArgs, SessionArgs, positive_int, timesteps_list
from .format import percent
from .paths import check_output


def print_report(report: dict, title: str | None = None) -> None:
    if title:
        print(title)
    print(f"{report['samples']} samples on {report['provider']}")
    print(f"ANN accuracy: {percent(report['ann']['accuracy'])}")
    print(f"{'T':>6}  {'SNN acc':>8}  {'agree':>8}  {'seconds':>8}")
    for t, row in report["snn"].items():
        print(f"{t:>6}  {percent(row['accuracy']):>8}  {percent(row['agreement']):>8}  {row['seconds']:8.2f}")


def activity_plots(plot: str, models: list[str]) -> dict[str, Path]:
    """Where ``--plot PATH --activity`` draws each model's activity: PATH_activity[_model].png."""
    plot_path = Path(plot)
    names = {}
    for path in models:
        suffix = f"_{Path(path).stem}" if len(models) > 1 else ""
        names[path] = plot_path.with_name(f"{plot_path.stem}_activity{suffix}{plot_path.suffix or '.png'}")
    return names


class Eval:
    name = "eval"
    help = "accuracy and ANN agreement of SNNs at several timesteps, from one run each"
    groups = (DataArgs(), SessionArgs(batch_size=16), JsonArg("write the report as JSON"), QuietArg(), RayArgs())

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "models", nargs="+", metavar="model", help="SNN artifacts (.onnx); several give one curve each"
        )
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use the first N samples")
        parser.add_argument(
            "--timesteps",
            type=timesteps_list,
            default=[8, 16, 32, 64],
            help="T values, e.g. 8,16,32,64 or 1-128 (default 8,16,32,64)",
        )
        parser.add_argument("--ann", default=None, help="the ANN to compare with (default: rebuilt from each artifact)")
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

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        distributed = RayArgs.values(args)
        session_options = SessionArgs.values(args)
        inputs = [*args.models, args.data, args.ann]
        check_output(args.json, "json", inputs, [args.plot])
        check_output(args.plot, "plot", inputs)
        if args.plot and args.activity:
            for name in activity_plots(args.plot, args.models).values():
                check_output(name, "plot", inputs, [args.json, args.plot])
        snns = [onnx2snn.load(path) for path in args.models]  # every model is checked before any work
        progress = QuietArg.progress(args)
        reports = {}
        for path, snn in zip(args.models, snns):
            prep = DataArgs.preprocessing(args, snn.metadata.get("preprocessing"))
            # sharded: each worker reads the spec itself; in one process it is read once, here
            data = args.data if distributed else onnx2snn.load_data(args.data, preprocessing=prep)
            options = {"encoding": args.encoding, "seed": args.seed, **session_options}
            report = onnx2snn.evaluate(
                snn,
                data,
                args.timesteps,
                ann=args.ann,
                limit=args.limit,
                progress=progress,
                preprocessing=prep,
                **distributed,
                **options,
            )
            print_report(report, title=path if len(snns) > 1 else None)
            if args.activity:  # in the step form, whatever --form says; in this process
                if isinstance(data, str):
                    data = onnx2snn.load_data(data, preprocessing=prep)
                _, x = onnx2snn.model_inputs(snn, data, args.limit)
                report["activity"] = onnx2snn.activity(snn, x, max(args.timesteps), progress=progress, **options)
                print(onnx2snn.format_activity(report["activity"]))
            reports[path] = report
        if args.json:
            onnx2snn.save_json(next(iter(reports.values())) if len(reports) == 1 else reports, args.json)
        if args.plot:
            onnx2snn.plot_evaluations(reports, args.plot)
            if args.activity:
                for path, name in activity_plots(args.plot, list(reports)).items():
                    onnx2snn.plot_activity(reports[path]["activity"], name, f"SNN activity, {Path(path).stem}")
        return 0
