"""onnx2snn demo: convert the bundled Fashion-MNIST CNN and show accuracy climbing with T."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .args import add_provider_args, add_quiet_arg, positive_int, session_args
from .format import percent

SHOWN = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ACTIVITY_T = 32  # firing rates and operations are shown at this T (or the largest, if smaller)


class Demo:
    name = "demo"
    help = "convert the bundled Fashion-MNIST CNN, evaluate T = 1..128, print a table and plot it, with its activity"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-o",
            "--output",
            default="onnx2snn-demo",
            help="folder for snn.onnx, report.json, accuracy.png, activity.png (default ./onnx2snn-demo)",
        )
        parser.add_argument("--timesteps", type=positive_int, default=128, help="largest T (default 128)")
        parser.add_argument("--method", default=None, help="threshold calibration (default: convert's default)")
        add_provider_args(parser)
        add_quiet_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn
        from onnx2snn.artifact import write_atomic
        from onnx2snn.demo import MODEL, asset, demo_data
        from onnx2snn.plot import plot_activity
        from onnx2snn.report import describe_calibration
        from onnx2snn.runtime.evaluate import evaluate

        from .eval import plot_reports

        out = Path(args.output)
        calibration, test = demo_data()
        options = {"method": args.method} if args.method else {}
        print(f"converting the bundled {MODEL} on {len(calibration)} calibration images ...", flush=True)
        snn = onnx2snn.convert(asset(MODEL), calibration, **options)
        snn_path = snn.save(out / "snn.onnx")
        cal = snn.metadata["calibration"]
        print(f"  {len(snn.layers)} IF layers, thresholds by {describe_calibration(cal, snn.timesteps)} -> {snn_path}")
        print(f"simulating {len(test)} test images for T = 1..{args.timesteps} in one run ...", flush=True)
        report = evaluate(
            snn,
            test,
            range(1, args.timesteps + 1),
            progress=not args.quiet and sys.stderr.isatty(),
            **session_args(args),
        )
        print(f"\nFashion-MNIST, {report['samples']} test images, {report['provider']}")
        shown = [t for t in SHOWN if t <= args.timesteps] + ([args.timesteps] if args.timesteps not in SHOWN else [])
        width = len(f"SNN T={max(shown)}")
        print(f"{'':>{width}}  {'accuracy':>9}  {'agreement':>9}")
        print(f"{'ANN':>{width}}  {percent(report['ann']['accuracy']):>9}")
        for t in shown:
            row = report["snn"][str(t)]
            print(f"{'SNN T=' + str(t):>{width}}  {percent(row['accuracy']):>9}  {percent(row['agreement']):>9}")
        steps = min(ACTIVITY_T, args.timesteps)
        report["activity"] = onnx2snn.activity(
            snn, test.x, steps, progress=not args.quiet and sys.stderr.isatty(), **session_args(args)
        )
        activity = report["activity"]
        print(
            f"\nat T={steps}: {activity['rate']:.3f} spikes per neuron per step, "
            f"{activity['ops_ratio']:.2f}x the ANN's operations (accumulates where it multiply-accumulates)"
        )
        write_atomic(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
        plot_reports(
            {"fashion_mnist_cnn_bn": report},
            str(out / "accuracy.png"),
            title="onnx2snn demo: Fashion-MNIST CNN, accuracy vs timesteps",
        )
        plot_activity(activity, out / "activity.png", "onnx2snn demo: Fashion-MNIST CNN")
        print(
            f"\nwrote {out / 'report.json'}, {out / 'accuracy.png'} and {out / 'activity.png'} "
            f"in {report['seconds']:.1f}s of simulation"
        )
        return 0
