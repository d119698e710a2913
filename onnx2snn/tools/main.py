"""The ``onnx2snn`` command line: one small class per subcommand (its ``groups`` of shared
flags from args.py, its own flags in ``add_arguments``, its work in ``run``, calling only the
public API), errors turned into one line and an exit code here and nowhere else."""

from __future__ import annotations

import argparse
import os
import sys

from .bench import Bench
from .convert import Convert
from .demo import Demo
from .eval import Eval
from .finetune import Finetune
from .inspect import Inspect
from .run import Run
from .unroll import Unroll

TOOLS = [Convert(), Run(), Eval(), Inspect(), Bench(), Unroll(), Demo(), Finetune()]

EXIT_ERROR = 1  # bad input, unsupported model, failed calibration
EXIT_INTERNAL = 3  # a bug: please report it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnx2snn", description="Convert ReLU ANNs into spiking networks, ONNX in, ONNX out."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for tool in TOOLS:
        command = sub.add_parser(tool.name, help=tool.help, description=tool.help)
        for group in tool.groups:
            group.add(command)
        tool.add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from onnx2snn import __version__

        print(f"onnx2snn {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    tool = next(t for t in TOOLS if t.name == args.command)
    from onnx2snn import Onnx2SnnError

    try:
        return tool.run(args)
    except Onnx2SnnError as e:
        if args.debug:
            raise
        print(f"onnx2snn {tool.name}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"onnx2snn {tool.name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`onnx2snn inspect m.onnx | head`): not our error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush stays quiet
        return 1
    except Exception as e:
        if args.debug:
            raise
        print(
            f"onnx2snn {tool.name}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
