"""onnx2snn run: simulate an SNN artifact on inputs and write what it outputs."""

from __future__ import annotations

import argparse

from .args import DataArgs, ModelArg, OutputArg, QuietArg, SessionArgs, positive_int, timesteps
from .format import percent
from .paths import check_output


class Run:
    name = "run"
    help = "simulate an SNN on inputs for T steps and write its decoded outputs (and predictions) to an .npz"
    groups = (
        ModelArg(),
        DataArgs(what="inputs"),
        OutputArg("where to write the .npz"),
        SessionArgs(batch_size=16),
        QuietArg(),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--timesteps", type=timesteps, default=None, help="T (default: the artifact's; a sequence input's length)"
        )
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use the first N samples")
        parser.add_argument(
            "--per-step", action="store_true", help="also write the decoded output after every step, [T, N, ...]"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of Poisson input (0)")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        session_options = SessionArgs.values(args)
        check_output(args.output, "output", [args.model, args.data])
        snn = onnx2snn.load(args.model)
        prep = DataArgs.preprocessing(args, snn.metadata.get("preprocessing"))
        data, x = onnx2snn.model_inputs(snn, onnx2snn.load_data(args.data, preprocessing=prep), args.limit)
        steps = args.timesteps or snn.timesteps
        sequences = [i["name"] for i in snn.inputs if i.get("sequence")]
        if sequences and not args.timesteps:  # as many steps as the sequence holds
            steps = (x[sequences[0]] if isinstance(x, dict) else x).shape[1]
        session = onnx2snn.SNNSession(snn, seed=args.seed, **session_options)
        decoded = session.run(x, steps, per_step=args.per_step, progress=QuietArg.progress(args))
        arrays = {"outputs": decoded[-1] if args.per_step else decoded}
        if args.per_step:
            arrays["per_step"] = decoded
        if arrays["outputs"].ndim == 2:  # [N, classes]: a classifier
            arrays["predictions"] = arrays["outputs"].argmax(axis=-1)
        for name in snn.model_outputs[len(snn.outputs) :]:  # a trailing head's outputs (labels, ...)
            value = session.run(x, steps, per_step=args.per_step, output=name)
            arrays[name] = value.astype(str) if value.dtype == object else value  # string labels, no pickles
        onnx2snn.save_npz(args.output, **arrays)
        how = f"{session.provider} ({session.form} form, {session.neurons} neurons)"
        line = f"{len(data)} samples x {steps} steps on {how} -> {args.output}"
        if "predictions" in arrays and data.y is not None:
            line += f"; accuracy {percent(float((arrays['predictions'] == data.y).mean())).strip()}"
        print(line)
        return 0
