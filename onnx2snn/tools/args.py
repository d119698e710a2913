"""Argument groups shared by subcommands, each defined once (Polygraphy's style)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def timesteps_list(text: str) -> list[int]:
    """'8,16,32' or '1-128' (every T in the range) or a mix: '1-8,16,32'."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if sep:
            a, b = positive_int(lo), positive_int(hi)
            if b < a:
                raise argparse.ArgumentTypeError(f"empty timestep range {part!r}")
            values.update(range(a, b + 1))
        else:
            values.add(positive_int(part))
    return sorted(values)


def add_provider_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--providers",
        metavar="P[,P]",
        type=lambda s: s.split(","),
        default=None,
        help="execution providers: tensorrt, cuda, cpu (default: the best that works here)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=256, help="samples per batch (default 256)")


def add_data_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--data",
        required=required,
        metavar="DATA",
        help="evaluation data: an .npz with 'x' (model-ready inputs) and 'y' (labels), or .npy",
    )
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use the first N samples")


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
