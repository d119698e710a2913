"""onnx2snn demo: convert the bundled Fashion-MNIST CNN and show accuracy climbing with T."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import OutputArg, QuietArg, SessionArgs, timesteps
from .format import percent
from .paths import check_output, check_output_folder

SHOWN = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ACTIVITY_T = 32  # firing rates and operations are shown at this T (or the largest, if smaller)


class Demo:
    name = "demo"
    help = "convert the bundled Fashion-MNIST CNN, evaluate T = 1..128, print a table and plot it, with its activity"
    groups = (
        OutputArg(
            "folder for snn.onnx, report.json, accuracy.png, activity.png (default ./onnx2snn-demo)",
            required=False,
            default="onnx2snn-demo",
        ),
        SessionArgs(),
        QuietArg(),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timesteps", type=timesteps, default=128, help="largest T (default 128)")
        parser.add_argument("--method", default=None, help="threshold calibration (default: convert's default)")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        out = Path(args.output)
        session_options = SessionArgs.values(args)
        if args.method:
            onnx2snn.ConvertOptions.make(method=args.method)
        check_output_folder(out, "output")
        for name in ("snn.onnx", "report.json", "accuracy.png", "activity.png"):
            check_output(out / name, "output")
        calibration, test = onnx2snn.demo_data()
        options = {"method": args.method} if args.method else {}
        model = onnx2snn.demo_model()
        print(f"converting the bundled {model.name} on {len(calibration)} calibration images ...", flush=True)
        snn = onnx2snn.convert(model, calibration, **options)
        snn_path = snn.save(out / "snn.onnx")
        how = onnx2snn.describe_calibration(snn.metadata["calibration"], snn.timesteps)
        print(f"  {len(snn.layers)} IF layers, thresholds by {how} -> {snn_path}")
        print(f"simulating {len(test)} test images for T = 1..{args.timesteps} in one run ...", flush=True)
        progress = QuietArg.progress(args)
        report = onnx2snn.evaluate(snn, test, range(1, args.timesteps + 1), progress=progress, **session_options)
        print(f"\nFashion-MNIST, {report['samples']} test images, {report['provider']}")
        shown = [t for t in SHOWN if t <= args.timesteps] + ([args.timesteps] if args.timesteps not in SHOWN else [])
        width = len(f"SNN T={max(shown)}")
        print(f"{'':>{width}}  {'accuracy':>9}  {'agreement':>9}")
        print(f"{'ANN':>{width}}  {percent(report['ann']['accuracy']):>9}")
        for t in shown:
            row = report["snn"][str(t)]
            print(f"{'SNN T=' + str(t):>{width}}  {percent(row['accuracy']):>9}  {percent(row['agreement']):>9}")
        steps = min(ACTIVITY_T, args.timesteps)
        report["activity"] = onnx2snn.activity(snn, test.x, steps, progress=progress, **session_options)
        activity = report["activity"]
        print(
            f"\nat T={steps}: {activity['rate']:.3f} spikes per neuron per step, "
            f"{activity['ops_ratio']:.2f}x the ANN's operations (accumulates where it multiply-accumulates)"
        )
        onnx2snn.save_json(report, out / "report.json")
        onnx2snn.plot_evaluations(
            {"fashion_mnist_cnn_bn": report},
            str(out / "accuracy.png"),
            title="onnx2snn demo: Fashion-MNIST CNN, accuracy vs timesteps",
        )
        onnx2snn.plot_activity(activity, out / "activity.png", "onnx2snn demo: Fashion-MNIST CNN")
        print(
            f"\nwrote {out / 'report.json'}, {out / 'accuracy.png'} and {out / 'activity.png'} "
            f"in {report['seconds']:.1f}s of simulation"
        )
        return 0
