"""onnx2snn convert: ANN.onnx -> SNN.onnx."""

from __future__ import annotations

import argparse

from .args import DataArgs, ModelArg, OutputArg, RayArgs, finite_float, positive_int, timesteps
from .paths import check_output


def corrections_list(text: str) -> list[str]:
    return [] if text == "none" else [c.strip() for c in text.split(",") if c.strip()]


class Convert:
    name = "convert"
    help = "convert a ReLU ANN (ONNX), or a NIR graph (.nir), into an SNN artifact (ONNX)"
    groups = (
        ModelArg("the ANN, an .onnx file; or a NIR graph, a .nir file"),
        OutputArg("where to write the SNN .onnx"),
        DataArgs("--calibration", "calibration data (required for an ANN; a NIR graph needs none)", required=False),
        RayArgs(),
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
            type=timesteps,
            default=None,
            help="the T that thresholds and corrections are tuned for, the artifact's default T "
            f"({onnx2snn.DEFAULT_TIMESTEPS})",
        )
        parser.add_argument("--reset", choices=["subtract", "zero"], default=None, help="membrane reset (subtract)")
        parser.add_argument(
            "--v-init", type=finite_float, default=None, help="initial membrane, fraction of threshold (0.5)"
        )
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
        nir.add_argument("--dt", type=finite_float, default=None, help="the time step (default: the file's, else 1)")
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
            raise onnx2snn.ConfigError("converting an ANN needs calibration data: --calibration DATA", "calibration")
        if args.dt is not None or args.nir_reset is not None:
            flag = "dt" if args.dt is not None else "nir_reset"
            raise onnx2snn.ConfigError("applies to a NIR graph (.nir) only", flag)
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
        # bad options and unwritable outputs are reported before anything is read
        onnx2snn.ConvertOptions.make(**options)
        distributed = RayArgs.values(args)
        prep = DataArgs.preprocessing(args)
        inputs = [args.model, args.calibration]
        check_output(args.output, "output", inputs)
        check_output(args.report, "report", inputs, [args.output])
        model = onnx2snn.load_onnx(args.model)  # a bad model file is reported before the data is read
        if distributed:  # each worker reads its own shard of the spec
            calibration, options = args.calibration, {**options, **distributed, "preprocessing": prep}
        else:
            calibration = onnx2snn.load_data(args.calibration, split="train", preprocessing=prep)
        try:
            snn = onnx2snn.convert(model, calibration, **options)
        except onnx2snn.ConversionError as e:
            if args.report and e.report:
                try:
                    onnx2snn.write_report(e.report, args.report)
                except onnx2snn.OutputError as report_error:  # the refusal matters more
                    e.args = (f"{e} (and the report was not written: {report_error})",)
            raise
        path = snn.save(args.output)
        if args.report:
            onnx2snn.write_report(snn.report, args.report)
        cal = snn.metadata["calibration"]
        kind = "MultiSpikeIF" if snn.metadata.get("spike_mode") == "multi" else "IF"
        print(
            f"converted {args.model} -> {path}: {len(snn.layers)} {kind} layers, thresholds by "
            f"{onnx2snn.describe_calibration(cal, snn.timesteps)}, {cal['samples']} calibration samples"
            + (f", sharded over {cal['distributed']['workers']} Ray workers" if "distributed" in cal else "")
        )
        for node, theta in snn.thresholds.items():
            print(f"  {node:40s} threshold {onnx2snn.describe_threshold(theta)}")
        return 0

    def run_nir(self, args: argparse.Namespace) -> int:
        import onnx2snn

        # what calibrates an ANN means nothing here: refused by name rather than ignored
        ann_only = ["calibration", "method", "per_channel", "corrections", "timesteps", "reset", "v_init"]
        ann_only += ["encoding", "calibration_samples", "seed", "outputs", "report", "ray", "workers"]
        ann_only += ["scale", "mean", "std", "layout"]
        given = next((name for name in ann_only if getattr(args, name, None) not in (None, False)), None)
        if given is not None:
            raise onnx2snn.ConfigError("applies to converting an ANN, not a NIR graph (.nir)", given)
        check_output(args.output, "output", [args.model])
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
