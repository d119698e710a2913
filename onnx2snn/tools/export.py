"""onnx2snn export: an SNN artifact in another form, chosen by the output's suffix."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .args import ModelArg, OutputArg
from .paths import check_output


def _onnx(snn, args: argparse.Namespace) -> str:
    import onnx2snn

    if args.inline:
        snn = onnx2snn.inline(snn)
    snn.save(args.output)
    return "step form, every IF expanded into standard operators" if args.inline else "step form"


# output suffix -> (what it writes, writer); any other suffix is refused by name
FORMATS: dict[str, tuple[str, Callable]] = {
    ".onnx": ("the ONNX step form (--inline: with every IF expanded into standard operators)", _onnx),
}


class Export:
    name = "export"
    help = "write an SNN artifact in another form, by the output's suffix: " + "; ".join(
        f"{suffix}: {what}" for suffix, (what, _) in FORMATS.items()
    )
    groups = (ModelArg(), OutputArg("where to write it; the suffix chooses the format"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--inline",
            action="store_true",
            help="expand every IF neuron into standard operators, for runtimes without model-local "
            "functions (OpenVINO, onnx2torch); same inputs, outputs and metadata",
        )

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        suffix = Path(args.output).suffix.lower()
        if suffix not in FORMATS:
            known = ", ".join(FORMATS)
            raise onnx2snn.ConfigError(
                f"export to '{suffix or args.output}' is not supported (yet); formats: {known}", option="output"
            )
        check_output(args.output, "output", [args.model])
        snn = onnx2snn.load(args.model)
        what = FORMATS[suffix][1](snn, args)
        print(f"exported {args.model} -> {args.output} ({what})")
        return 0
