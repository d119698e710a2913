"""onnx2snn export: an SNN artifact in another format, chosen by the output's suffix."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .args import ModelArg, OutputArg


def export_nir(args: argparse.Namespace) -> int:
    import onnx2snn

    snn = onnx2snn.load(args.model)
    export = onnx2snn.to_nir(snn, initial_membrane=args.initial_membrane, relay_shortcuts=not args.no_relay)
    onnx2snn.save_nir(export, args.output)
    neurons = sum(1 for row in export.nodes if row["nir"].startswith("IF"))
    print(f"exported {args.model} -> {args.output}: NIR graph, {len(export.graph.nodes)} nodes, {neurons} IF layers")
    print(f"  spikes: {export.metadata['spike_mode']}, reset: {export.metadata['reset']}, dt = 1 step")
    for line in export.deviations:
        print(f"  deviation: {line}")
    for target, need in export.targets.items():
        print(f"  {target}: {need}")
    if args.report:
        onnx2snn.save_json(export.report(), args.report)
    return 0


def export_onnx(args: argparse.Namespace) -> int:
    import onnx2snn

    raise onnx2snn.ConfigError("export to .onnx is not supported yet (the artifact itself is ONNX)")


# output suffix -> how to write it
FORMATS: dict[str, Callable[[argparse.Namespace], int]] = {".nir": export_nir, ".onnx": export_onnx}


class Export:
    name = "export"
    help = "write an SNN artifact in another format, by the output's suffix: .nir (NIR graph for sinabs, Norse, ...)"
    groups = (ModelArg(), OutputArg(f"the file to write ({', '.join(FORMATS)})"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--initial-membrane",
            choices=["refuse", "drop"],
            default="refuse",
            help="NIR's neurons start at 0: refuse an artifact whose membranes start elsewhere (default), or drop "
            "its initial membranes (a deviation, stated)",
        )
        parser.add_argument(
            "--no-relay",
            action="store_true",
            help="keep residual blocks' Conv shortcuts as their own branch (depth-first executors such as "
            "nirtorch's then read them a step late)",
        )
        parser.add_argument("--report", default=None, metavar="PATH", help="write the export report as JSON")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        suffix = Path(args.output).suffix.lower()
        if suffix not in FORMATS:
            raise onnx2snn.ConfigError(f"cannot tell the format of {args.output}: use one of {', '.join(FORMATS)}")
        return FORMATS[suffix](args)
