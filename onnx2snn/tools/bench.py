"""onnx2snn bench: how fast an SNN artifact simulates here, against the dense limit."""

from __future__ import annotations

import argparse

from .args import JsonArg, ModelArg, SessionArgs, positive_int, timesteps
from .paths import check_output


class Bench:
    name = "bench"
    help = "time T steps of an SNN against T passes of its ANN (the dense limit); --profile says where time goes"
    groups = (ModelArg(), SessionArgs(batch_size=64), JsonArg())

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timesteps", type=timesteps, default=32, help="T (default 32)")
        parser.add_argument("--repeat", type=positive_int, default=3, help="repetitions, the best is kept (3)")
        parser.add_argument("--data", default=None, help="inputs (default: random inputs of the model's shape)")
        parser.add_argument("--profile", action="store_true", help="time per operator type inside a step")

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np

        import onnx2snn

        from .timing import time_against_dense

        options = SessionArgs.values(args)
        check_output(args.json, "json", [args.model, args.data])
        snn = onnx2snn.load(args.model)
        batch = args.batch_size
        if args.data:
            data = onnx2snn.load_data(args.data).head(batch)
            x = data.x
        else:  # random inputs of each data input's shape
            rng = np.random.default_rng(0)
            x = {
                i["name"]: rng.uniform(0, 1, [batch if d is None else d for d in i["shape"]]).astype(np.float32)
                for i in snn.inputs
            }
            x = x if len(x) > 1 else next(iter(x.values()))
        samples = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        if args.profile and args.form == "auto":
            options["form"] = "step"  # only the step form is profiled
        session = onnx2snn.SNNSession(snn, profile=args.profile, **options)
        steps = args.timesteps
        result = {
            "provider": session.provider,
            "form": session.form,
            "neurons": session.neurons,
            "batch": samples,
            "timesteps": steps,
            **time_against_dense(session, x, steps, args.repeat, args.providers),
        }
        snn_s, ann_s = result["snn_seconds"], result["dense_limit_seconds"]
        print(f"{samples} inputs x {steps} steps on {session.provider}, {session.form} form, {session.neurons} neurons")
        print(
            f"  SNN           {snn_s:8.3f} s   {result['images_per_s']:9.1f} images/s   "
            f"{result['ms_per_step']:.3f} ms/step"
        )
        print(f"  dense limit   {ann_s:8.3f} s   (T x the ANN alone)   SNN / dense = {result['vs_dense_limit']:.2f}x")
        if args.profile and session.form != "step":
            print("  (--profile times the step form's operators; run with --form step to see them)")
        elif args.profile:
            rows = session.profile()
            result["profile"] = rows
            print("  where a step's time goes (onnxruntime profile):")
            for row in rows[:12]:
                print(f"    {row['op']:22s} {100 * row['share']:5.1f}%")
        if args.json:
            onnx2snn.save_json(result, args.json)
        return 0
