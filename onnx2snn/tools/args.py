"""Argument groups shared by subcommands, each defined once (Polygraphy's habit): a tool lists
the groups it takes in ``groups``, adds only its own flags, and asks each group for the values
it turns the flags into."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def timesteps(text: str) -> int:
    """A number of timesteps: 1 to onnx2snn.MAX_TIMESTEPS."""
    from onnx2snn import MAX_TIMESTEPS

    value = positive_int(text)
    if value > MAX_TIMESTEPS:
        raise argparse.ArgumentTypeError(f"at most {MAX_TIMESTEPS:,} timesteps, got {value:,}")
    return value


def timesteps_list(text: str) -> list[int]:
    """'8,16,32' or '1-128' (every T in the range) or a mix: '1-8,16,32'."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if sep:
            a, b = timesteps(lo), timesteps(hi)
            if b < a:
                raise argparse.ArgumentTypeError(f"empty timestep range {part!r}")
            values.update(range(a, b + 1))
        else:
            values.add(timesteps(part))
    return sorted(values)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def nonzero_floats(text: str) -> list[float]:
    values = floats(text)
    if any(v == 0 for v in values):
        raise argparse.ArgumentTypeError(f"a standard deviation cannot be zero, got {text!r}")
    return values


PROVIDERS = ("tensorrt", "trt", "cuda", "cpu")


def providers(text: str) -> list[str]:
    """'cuda,cpu': execution providers by short name (or onnxruntime's full names)."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    full = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    unknown = [n for n in names if n.lower() not in PROVIDERS and n not in full]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown execution provider {text!r}: use tensorrt, cuda or cpu")
    return names


class ArgGroup:
    """Flags that several commands take."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError


class ModelArg(ArgGroup):
    """The positional model file."""

    def __init__(self, help: str = "the SNN artifact (.onnx)"):
        self.help = help

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help=self.help)


class OutputArg(ArgGroup):
    """``-o PATH``: where the command writes its result."""

    def __init__(self, help: str, required: bool = True, default: str | None = None):
        self.help, self.required, self.default = help, required, default

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-o", "--output", required=self.required, default=self.default, help=self.help)


class JsonArg(ArgGroup):
    def __init__(self, help: str = "write the results as JSON"):
        self.help = help

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", default=None, metavar="PATH", help=self.help)


class QuietArg(ArgGroup):
    """``-q``: no progress bar (there is none either where stderr is not a terminal)."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    @staticmethod
    def progress(args: argparse.Namespace) -> bool:
        return not args.quiet and sys.stderr.isatty()


DATA_HELP = (
    "fashion-mnist[:train|:test], mnist:DIR, fashion-mnist:DIR, cifar10:DIR, digits, "
    "an IDX folder, PATH.npz ('x' [and 'y']) or PATH.npy"
)


class DataArgs(ArgGroup):
    """A data spec and the preprocessing that makes it model-ready."""

    def __init__(self, flag: str = "--data", what: str = "evaluation data", required: bool = True):
        self.flag, self.what, self.required = flag, what, required

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(self.flag, required=self.required, metavar="DATA", help=f"{self.what}: {DATA_HELP}")
        group = parser.add_argument_group("preprocessing (how the ANN was trained; stored in the artifact)")
        group.add_argument(
            "--scale", type=finite_float, default=None, help="multiply inputs by this (default 1/255 for images)"
        )
        group.add_argument("--mean", type=floats, default=None, metavar="M[,M...]", help="per-channel mean to subtract")
        group.add_argument(
            "--std", type=nonzero_floats, default=None, metavar="S[,S...]", help="per-channel std to divide by"
        )
        group.add_argument("--layout", choices=["nchw", "nhwc"], default=None, help="layout the model expects (nchw)")

    @staticmethod
    def preprocessing(args: argparse.Namespace, stored: dict | None = None) -> Any:
        """Preprocessing from the flags, each unset flag taken from ``stored`` (an artifact's)."""
        from onnx2snn import Preprocessing

        base = Preprocessing.from_dict(stored)
        return Preprocessing(
            scale=args.scale if args.scale is not None else base.scale,
            mean=args.mean if args.mean is not None else base.mean,
            std=args.std if args.std is not None else base.std,
            layout=args.layout or base.layout,
        )


class SessionArgs(ArgGroup):
    """How an SNN runs: providers, batch, execution form, memory, threads."""

    def __init__(self, batch_size: int = 256):
        self.batch_size = batch_size

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--providers",
            metavar="P[,P]",
            type=providers,
            default=None,
            help="execution providers: tensorrt, cuda, cpu (default: the best that works here)",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=self.batch_size,
            help=f"samples per batch (default {self.batch_size})",
        )
        parser.add_argument(
            "--form",
            choices=["auto", "step", "unrolled"],
            default="auto",
            help="execution form: one run per step, or all steps in one run (auto: unrolled on GPU and for "
            "batches of at most 16 on CPU, else step)",
        )
        parser.add_argument(
            "--max-memory",
            type=positive_int,
            default=2048,
            metavar="MB",
            help="memory budget of a run: batches are split to stay under it, and a run that cannot fit it "
            "(outputs of every step, the unrolled form at a large T) is refused before it starts (2048)",
        )
        parser.add_argument(
            "--neurons",
            choices=["auto", "compiled", "onnx"],
            default="auto",
            help="how the step form computes its IF layers: the compiled kernel (one pass per layer and step) or "
            "the neuron's ONNX operators (auto: compiled where it is built and runs, on the CPU provider)",
        )
        parser.add_argument("--threads", type=positive_int, default=None, help="onnxruntime's intra-op threads")
        parser.add_argument(
            "--spin",
            choices=["auto", "on", "off"],
            default="auto",
            help="let onnxruntime's threads spin between operators (auto: only for batches of at most 4)",
        )

    @staticmethod
    def values(args: argparse.Namespace) -> dict[str, Any]:
        """SNNSession's keyword arguments (the providers asked for checked to work here)."""
        if args.providers:
            from onnx2snn import resolve_providers

            resolve_providers(args.providers)
        return {
            "providers": args.providers,
            "batch_size": args.batch_size,
            "form": args.form,
            "max_memory": args.max_memory << 20,
            "threads": args.threads,
            "neurons": args.neurons,
            "spin": {"auto": None, "on": True, "off": False}[args.spin],
        }


class RayArgs(ArgGroup):
    """``--ray [ADDRESS]`` and ``--workers N``: the work sharded over a Ray cluster."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("distributed (pip install 'onnx2snn[ray]')")
        group.add_argument(
            "--ray",
            nargs="?",
            const="local",
            default=None,
            metavar="ADDRESS",
            help="shard the work over Ray workers: the cluster at ADDRESS, or a local one without it",
        )
        group.add_argument(
            "--workers", type=positive_int, default=None, help="workers of a local cluster (default: one per CPU)"
        )

    @staticmethod
    def values(args: argparse.Namespace) -> dict[str, Any]:
        """``workers``/``ray_address`` keyword arguments, or none without --ray."""
        if args.ray is None:
            if args.workers is not None:
                from onnx2snn import ConfigError

                raise ConfigError("--workers needs --ray")
            return {}
        return {"workers": args.workers, "ray_address": None if args.ray == "local" else args.ray}
