"""onnx2snn convert: ANN.onnx -> SNN.onnx."""

from __future__ import annotations

import argparse

from .args import DataArgs, ModelArg, OutputArg, positive_int


def corrections_list(text: str) -> list[str]:
    return [] if text == "none" else [c.strip() for c in text.split(",") if c.strip()]


class Convert:
    name = "convert"
    help = "convert a ReLU ANN (ONNX), or a NIR graph (.nir), into an SNN artifact (ONNX)"
    groups = (
        ModelArg("the ANN, an .onnx file; or a NIR graph, a .nir file"),
        OutputArg("where to write the SNN .onnx"),
        DataArgs("--calibration", "calibration data (required for an ANN; a NIR graph needs none)", required=False),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        import onnx2snn

        methods = " | ".join(onnx2snn.method_forms())
        parser.add_argument("--method", default=None, help=f"thresholds: {methods} (default {onnx2snn.DEFAULT_METHOD})")
        parser.add_argument(
            "--per-channel",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"one threshold per channel, or per layer with --no-per-channel (default: per "
            f"{'channel' if onnx2snn.DEFAULT_PER_CHANNEL else 'layer'})",
        )
        kinds = ",".join(onnx2snn.CORRECTIONS)
        parser.add_argument(
            "--corrections",
            type=corrections_list,
            default=None,
            metavar=f"{kinds}|none",
            help="training-free corrections after thresholds: "
            + "; ".join(f"{k}: {rule}" for k, rule in onnx2snn.CORRECTIONS.items())
            + f" (default: {','.join(onnx2snn.DEFAULT_CORRECTIONS) or 'none'})",
        )
        parser.add_argument(
            "--timesteps",
            type=positive_int,
            default=None,
            help="the T that thresholds and corrections are tuned for, the artifact's default T "
            f"({onnx2snn.DEFAULT_TIMESTEPS})",
        )
        parser.add_argument("--reset", choices=["subtract", "zero"], default=None, help="membrane reset (subtract)")
        parser.add_argument("--v-init", type=float, default=None, help="initial membrane, fraction of threshold (0.5)")
        parser.add_argument(
            "--outputs",
            type=lambda t: t.split(","),
            default=None,
            metavar="NAME[,NAME]",
            help="model outputs to keep (default all), e.g. a classifier's probabilities without its labels",
        )
        parser.add_argument(
            "--report",
            default=None,
            metavar="PATH",
            help="write what became of every node (JSON for .json, else text); written even when refused",
        )
        parser.add_argument("--encoding", choices=["direct", "poisson"], default=None, help="input encoding (direct)")
        parser.add_argument(
            "--calibration-samples",
            type=positive_int,
            default=None,
            metavar="N",
            help="calibrate on a seeded random subset of N samples",
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="seed of the calibration subset and Poisson input (0)"
        )
        parser.add_argument(
            "--spike-mode",
            choices=["single", "multi"],
            default=None,
            help="spikes a step: single (IF: one at most) or multi (as many as thresholds crossed, as sinabs' IAF). "
            "For a .nir file, the convention it follows (default: what the file says, else single)",
        )
        nir = parser.add_argument_group("NIR input (.nir): how its continuous-time neurons are stepped")
        nir.add_argument("--dt", type=float, default=None, help="the time step (default: the file's, else 1)")
        nir.add_argument(
            "--nir-reset",
            choices=["subtract", "zero"],
            default=None,
            help="reset after a spike (default: the file's; else subtract for nir 1.0.4 files, zero after)",
        )

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        if args.model.lower().endswith(".nir"):
            return self.run_nir(args)
        if args.calibration is None:
            raise onnx2snn.ConfigError("converting an ANN needs calibration data: --calibration DATA")
        given = {
            "method": args.method,
            "per_channel": args.per_channel,
            "corrections": args.corrections,
            "timesteps": args.timesteps,
            "reset": args.reset,
            "v_init": args.v_init,
            "encoding": args.encoding,
            "calibration_samples": args.calibration_samples,
            "seed": args.seed,
            "outputs": args.outputs,
            "spike_mode": args.spike_mode,
        }
        options = {k: v for k, v in given.items() if v is not None}
        onnx2snn.ConvertOptions.make(**options)  # bad options are reported before anything is read
        model = onnx2snn.load_onnx(args.model)  # a bad model file is reported before the data is read
        calibration = onnx2snn.load_data(args.calibration, split="train", preprocessing=DataArgs.preprocessing(args))
        try:
            snn = onnx2snn.convert(model, calibration, **options)
        except onnx2snn.ConversionError as e:
            if args.report and e.report:
                onnx2snn.write_report(e.report, args.report)
            raise
        path = snn.save(args.output)
        if args.report:
            onnx2snn.write_report(snn.metadata["report"], args.report)
        cal = snn.metadata["calibration"]
        print(
            f"converted {args.model} -> {path}: {len(snn.layers)} IF layers, thresholds by "
            f"{onnx2snn.describe_calibration(cal, snn.timesteps)}, {cal['samples']} calibration samples"
        )
        for node, theta in snn.thresholds.items():
            print(f"  {node:40s} threshold {onnx2snn.describe_threshold(theta)}")
        return 0

    def run_nir(self, args: argparse.Namespace) -> int:
        import onnx2snn

        snn = onnx2snn.from_nir(args.model, spike_mode=args.spike_mode, reset=args.nir_reset, dt=args.dt)
        path = snn.save(args.output)
        nir = snn.metadata["nir"]
        print(
            f"converted {args.model} -> {path}: {len(snn.layers)} neuron layers "
            f"({', '.join(sorted({layer['op'] for layer in snn.layers}))}), {snn.metadata['spike_mode']} spikes, "
            f"reset {snn.metadata['reset']}, dt {nir['dt']:g}"
        )
        shape = ", ".join(str(d or "N") for d in snn.input_shape)
        print(f"  input {snn.input_name}: a sequence [N, T, {shape.split(', ', 1)[-1]}], one slice a step")
        return 0
