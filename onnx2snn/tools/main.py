"""The ``onnx2snn`` command line: one small class per subcommand (its ``groups`` of shared
flags from args.py, its own flags in ``add_arguments``, its work in ``run``, calling only the
public API), errors turned into one line and an exit code here and nowhere else."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

from .bench import Bench
from .convert import Convert
from .demo import Demo
from .eval import Eval
from .export import Export
from .finetune import Finetune
from .inspect import Inspect
from .run import Run
from .unroll import Unroll

TOOLS = [Convert(), Run(), Eval(), Inspect(), Bench(), Unroll(), Export(), Finetune(), Demo()]

EXIT_ERROR = 1  # bad input, unsupported model, failed calibration, an output that cannot be written
EXIT_USAGE = 2  # a bad argument: argparse's, or a ConfigError (an option out of range, a budget too small)
EXIT_INTERNAL = 3  # a bug: please report it
FLAGS = {"output": "-o/--output"}  # option names whose flag is not --name-with-dashes


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, raised like SIGINT's KeyboardInterrupt so that every file being
    written is cleaned up (files.py) before the command exits."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Interrupted inside the block (main thread only)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is not None:
                previous[sig] = signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def one_line(text: str) -> str:
    """A message on one line (some libraries' reasons span several)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def flag(option: str) -> str:
    return FLAGS.get(option, "--" + option.replace("_", "-"))


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported as one line (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="onnx2snn", description="Convert ReLU ANNs into spiking networks, ONNX in, ONNX out.")
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
        return EXIT_USAGE
    tool = next(t for t in TOOLS if t.name == args.command)
    with _signals_raise():
        return _run(tool, args)


def _run(tool, args: argparse.Namespace) -> int:
    prefix = f"onnx2snn {tool.name}"
    try:
        from onnx2snn import ConfigError, Onnx2SnnError

        try:
            return tool.run(args)
        except ConfigError as e:
            if args.debug:
                raise
            where = f"argument {flag(e.option)}: " if e.option else ""
            print(f"{prefix}: error: {where}{one_line(e)}", file=sys.stderr)
            return EXIT_USAGE
        except Onnx2SnnError as e:
            if args.debug:
                raise
            print(f"{prefix}: error: {one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Interrupted as e:
        print(f"{prefix}: interrupted ({signal.Signals(e.signum).name})", file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:  # the reader went away (`onnx2snn inspect m.onnx | head`): not our error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush stays quiet
        return EXIT_ERROR
    except MemoryError:
        if args.debug:
            raise
        print(
            f"{prefix}: error: out of memory (lower --batch-size, --max-memory, --timesteps or the number of samples)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except Exception as e:
        if args.debug:
            raise
        print(
            f"{prefix}: internal error: {type(e).__name__}: {one_line(e)[:300]} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
