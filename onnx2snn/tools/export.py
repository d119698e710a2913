"""onnx2snn export: an SNN artifact in another form, chosen by the output's suffix."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .args import ModelArg, OutputArg
from .paths import check_output


def _onnx(snn, args: argparse.Namespace) -> list[str]:
    import onnx2snn

    if args.inline:
        snn = onnx2snn.inline(snn)
    snn.save(args.output)
    return ["step form, every neuron expanded into standard operators" if args.inline else "step form"]


def _nir(snn, args: argparse.Namespace) -> list[str]:
    import onnx2snn

    export = onnx2snn.to_nir(snn, initial_membrane=args.initial_membrane, relay_shortcuts=not args.no_relay)
    onnx2snn.save_nir(export, args.output)
    if args.report:
        onnx2snn.save_json(export.report(), args.report)
    neurons = sum(1 for row in export.nodes if row["nir"].startswith("IF"))
    lines = [f"NIR graph, {len(export.graph.nodes)} nodes, {neurons} IF layers"]
    lines.append(f"spikes: {export.metadata['spike_mode']}, reset: {export.metadata['reset']}, dt = 1 step")
    lines += [f"deviation: {line}" for line in export.deviations]
    lines += [f"{target}: {need}" for target, need in export.targets.items()]
    return lines


# output suffix -> (what it writes, writer, the flags only it takes); any other suffix is refused
# by name. A writer returns what it wrote: a summary, then lines of detail.
FORMATS: dict[str, tuple[str, Callable, dict[str, object]]] = {
    ".onnx": (
        "the ONNX step form (--inline: with every neuron expanded into standard operators)",
        _onnx,
        {"inline": False},
    ),
    ".nir": (
        "a NIR graph (sinabs, Norse, snnTorch, ...)",
        _nir,
        {"initial_membrane": "refuse", "no_relay": False, "report": None},
    ),
}


class Export:
    name = "export"
    help = "write an SNN artifact in another form, by the output's suffix: " + "; ".join(
        f"{suffix}: {what}" for suffix, (what, _, _) in FORMATS.items()
    )
    groups = (ModelArg(), OutputArg("where to write it; the suffix chooses the format"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--inline",
            action="store_true",
            help=".onnx: expand every neuron into standard operators, for runtimes without model-local "
            "functions (OpenVINO, onnx2torch); same inputs, outputs and metadata",
        )
        parser.add_argument(
            "--initial-membrane",
            choices=["refuse", "drop"],
            default="refuse",
            help=".nir: NIR's neurons start at 0: refuse an artifact whose membranes start elsewhere (default), "
            "or drop its initial membranes (a deviation, stated)",
        )
        parser.add_argument(
            "--no-relay",
            action="store_true",
            help=".nir: keep residual blocks' Conv shortcuts as their own branch (depth-first executors such as "
            "nirtorch's then read them a step late)",
        )
        parser.add_argument("--report", default=None, metavar="PATH", help=".nir: write the export report as JSON")

    def run(self, args: argparse.Namespace) -> int:
        import onnx2snn

        suffix = Path(args.output).suffix.lower()
        if suffix not in FORMATS:
            known = ", ".join(FORMATS)
            raise onnx2snn.ConfigError(
                f"export to '{suffix or args.output}' is not supported (yet); formats: {known}", option="output"
            )
        for other, (_, _, flags) in FORMATS.items():  # a flag of another format says the user meant that one
            for name, default in flags.items():
                if other != suffix and getattr(args, name) != default:
                    raise onnx2snn.ConfigError(f"applies to {other} only, not {suffix}", option=name)
        check_output(args.output, "output", [args.model])
        check_output(args.report, "report", [args.model], [args.output])
        snn = onnx2snn.load(args.model)
        what, *details = FORMATS[suffix][1](snn, args)
        print(f"exported {args.model} -> {args.output} ({what})")
        for line in details:
            print(f"  {line}")
        return 0
