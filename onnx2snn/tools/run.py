"""onnx2snn run: simulate an SNN artifact on inputs and write what it outputs."""

from __future__ import annotations

import argparse

from .args import DataArgs, ModelArg, OutputArg, QuietArg, SessionArgs, positive_int
from .format import percent


class Run:
    name = "run"
    help = "simulate an SNN on inputs for T steps and write its decoded outputs (and predictions) to an .npz"
    groups = (ModelArg(), DataArgs(what="inputs"), OutputArg("where to write the .npz"), SessionArgs(), QuietArg())

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timesteps", type=positive_int, default=None, help="T (default: the artifact's)")
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use the first N samples")
        parser.add_argument(
            "--per-step", action="store_true", help="also write the decoded output after every step, [T, N, ...]"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of Poisson input (0)")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        snn = onnx2snn.load(args.model)
        prep = DataArgs.preprocessing(args, snn.metadata.get("preprocessing"))
        data, x = onnx2snn.model_inputs(snn, onnx2snn.load_data(args.data, preprocessing=prep), args.limit)
        steps = args.timesteps or (x.shape[1] if snn.sequence_input else snn.timesteps)
        session = onnx2snn.SNNSession(snn, seed=args.seed, **SessionArgs.values(args))
        decoded = session.run(x, steps, per_step=args.per_step, progress=QuietArg.progress(args))
        arrays = {"outputs": decoded[-1] if args.per_step else decoded}
        if args.per_step:
            arrays["per_step"] = decoded
        if arrays["outputs"].ndim == 2:  # [N, classes]: a classifier
            arrays["predictions"] = arrays["outputs"].argmax(axis=-1)
        onnx2snn.save_npz(args.output, **arrays)
        line = f"{len(x)} samples x {steps} steps on {session.provider} ({session.form} form) -> {args.output}"
        if "predictions" in arrays and data.y is not None:
            line += f"; accuracy {percent(float((arrays['predictions'] == data.y).mean())).strip()}"
        print(line)
        return 0
