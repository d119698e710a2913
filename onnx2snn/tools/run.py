"""onnx2snn run: simulate an SNN artifact on inputs and write what it outputs."""

from __future__ import annotations

import argparse
import io
import sys

from .args import add_data_args, add_provider_args, add_quiet_arg, positive_int, preprocessing, session_args
from .format import percent


class Run:
    name = "run"
    help = "simulate an SNN on inputs for T steps and write its decoded outputs (and predictions) to an .npz"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="the SNN artifact (.onnx)")
        add_data_args(parser, what="inputs")
        parser.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write the .npz")
        parser.add_argument("--timesteps", type=positive_int, default=None, help="T (default: the artifact's)")
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use the first N samples")
        parser.add_argument(
            "--per-step", action="store_true", help="also write the decoded output after every step, [T, N, ...]"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of Poisson input (0)")
        add_provider_args(parser)
        add_quiet_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np

        import onnx2snn
        from onnx2snn.artifact import write_atomic
        from onnx2snn.runtime.evaluate import model_inputs, progress_bar

        snn = onnx2snn.load(args.model)
        data = onnx2snn.load_data(args.data, preprocessing=preprocessing(args, snn.metadata.get("preprocessing")))
        data, x = model_inputs(snn, data, args.limit)
        steps = args.timesteps or snn.timesteps
        session = snn.session(
            **session_args(args),
            seed=args.seed,
        )
        bar = progress_bar(len(x) * steps, not args.quiet and sys.stderr.isatty())
        parts = list(session.iter_run(x, steps, per_step=args.per_step, progress=bar.update))
        bar.close()
        decoded = np.concatenate([p.decoded for p in parts], axis=1)  # [T or 1, N, ...]
        arrays = {"outputs": decoded[-1]}
        if args.per_step:
            arrays["per_step"] = decoded
        if decoded.ndim == 3:  # [., N, classes]: a classifier
            arrays["predictions"] = decoded[-1].argmax(axis=-1)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(args.output, buffer.getvalue())
        line = f"{len(x)} samples x {steps} steps on {session.provider} ({session.form} form) -> {args.output}"
        if "predictions" in arrays and data.y is not None:
            line += f"; accuracy {percent(float((arrays['predictions'] == data.y).mean())).strip()}"
        print(line)
        return 0
