"""onnx2snn finetune: quantize and fine-tune an ANN, or fine-tune an SNN through its T steps."""

from __future__ import annotations

import argparse

from .args import DataArgs, JsonArg, ModelArg, OutputArg, QuietArg, RayArgs, positive_int


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


class Finetune:
    name = "finetune"
    help = (
        "ANN: quantize the weights to B bits and fine-tune (straight-through estimator), written back as "
        "integers; SNN artifact: fine-tune through its T steps with a surrogate gradient"
    )
    groups = (
        ModelArg("an ANN (.onnx) or an SNN artifact (.onnx)"),
        OutputArg("where to write the fine-tuned .onnx"),
        DataArgs("--data", "labelled training data (train split by default)"),
        JsonArg("write what was done and the per-epoch log as JSON"),
        QuietArg(),
        RayArgs(),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from onnx2snn import ANN_DEFAULTS as A
        from onnx2snn import SNN_DEFAULTS as S

        parser.add_argument(
            "--weight-bits",
            type=positive_int,
            default=None,
            metavar="B",
            help="quantize the weights to B bits (2-8): INT4 storage up to 4 bits, INT8 above "
            "(an ANN is not quantized without it; an SNN's integer weights keep their bits)",
        )
        parser.add_argument(
            "--channel-wise", action="store_true", help="one weight scale per output channel (default: per layer)"
        )
        parser.add_argument(
            "--timesteps", type=positive_int, default=None, help="SNN only: the T to train at (default: the artifact's)"
        )
        train = parser.add_argument_group("training (defaults: ANN / SNN)")
        train.add_argument(
            "--epochs", type=positive_int, default=None, help=f"passes over the data ({A.epochs} / {S.epochs})"
        )
        train.add_argument("--lr", type=positive_float, default=None, help=f"learning rate ({A.lr:g} / {S.lr:g})")
        train.add_argument(
            "--momentum", type=positive_float, default=None, help=f"SGD momentum ({A.momentum:g} / {S.momentum:g})"
        )
        train.add_argument(
            "--weight-decay",
            type=positive_float,
            default=None,
            help=f"weight decay of weights and biases ({A.weight_decay:g} / {S.weight_decay:g})",
        )
        train.add_argument(
            "--batch-size", type=positive_int, default=None, help=f"samples per step ({A.batch_size} / {S.batch_size})"
        )
        train.add_argument("--seed", type=int, default=None, help="seed of the sample order and subset (0)")
        train.add_argument(
            "--samples", type=positive_int, default=None, metavar="N", help="train on a seeded subset of N samples"
        )
        train.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device (cpu)")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        model = onnx2snn.load_onnx(args.model)  # a bad model file is reported before the data is read
        artifact = onnx2snn.is_artifact(model)
        stored = onnx2snn.load(model).metadata.get("preprocessing") if artifact else None
        preprocessing = DataArgs.preprocessing(args, stored)
        distributed = RayArgs.values(args)
        # over Ray each worker reads the data spec itself
        data = args.data if distributed else onnx2snn.load_data(args.data, split="train", preprocessing=preprocessing)
        options = {
            "epochs": args.epochs,
            "lr": args.lr,
            "momentum": args.momentum,
            "weight_decay": args.weight_decay,
            "batch_size": args.batch_size,
            "seed": args.seed,
        }
        result = onnx2snn.finetune(
            onnx2snn.load(model) if artifact else model,
            data,
            weight_bits=args.weight_bits,
            channel_wise=args.channel_wise,
            timesteps=args.timesteps,
            samples=args.samples,
            device=args.device,
            progress=QuietArg.progress(args),
            **({"preprocessing": preprocessing, **distributed} if distributed else {}),
            **{k: v for k, v in options.items() if v is not None},
        )
        path = result.save(args.output)
        for row in result.log:
            print(
                f"epoch {row['epoch']}: loss {row['loss']:.4f}, training accuracy {100 * row['accuracy']:.2f}%, "
                f"lr {row['lr']:g}, {row['seconds']:.1f} s"
            )
        what = f"spiking, T = {result.record['timesteps']}" if artifact else "ANN"
        bits = result.record.get("weight_bits")
        if bits:
            what += f", {bits}-bit weights {'per channel' if result.record['channel_wise'] else 'per layer'}"
        spread = result.record.get("distributed")
        where = f", data-parallel over {spread['workers']} Ray workers" if spread else ""
        print(f"fine-tuned {args.model} ({what}) on {result.record['samples']} samples{where} -> {path}")
        if args.json:
            onnx2snn.save_json({"record": result.record, "log": result.log}, args.json)
        return 0
