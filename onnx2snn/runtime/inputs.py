"""The data inputs of a session, in one place: what the caller gives (one array, or a dict of
arrays by input name) checked against the artifact's ``inputs``, split into batches, and
turned into each step's feeds by each input's encoding (``direct``: the same value every step,
fed once to the time-invariant prefix; ``poisson``: a fresh seeded Bernoulli spike train of
the input intensities every step) or, for a ``sequence`` input ([N, T, ...]: a graph read
from NIR), its own slice ``x[:, t]`` at step t, as it is."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from ..artifact import SNNModel
from ..data import Inputs, check_inputs
from ..errors import ConfigError, DataError
from ..neuron import ENCODINGS

Feeds = dict[str, np.ndarray]


def input_encodings(model: SNNModel, encoding: str | Mapping[str, str] | None = None) -> dict[str, str]:
    """Each data input's encoding: the artifact's, or ``encoding`` for all (a str) or by name."""
    chosen = {i["name"]: i.get("encoding", model.encoding) for i in model.inputs}
    if isinstance(encoding, str):
        chosen = dict.fromkeys(chosen, encoding)
    elif encoding:
        unknown = [name for name in encoding if name not in chosen]
        if unknown:
            raise ConfigError(
                f"no data input named {', '.join(map(repr, unknown))}; the inputs are {', '.join(chosen)}",
                option="encoding",
            )
        chosen.update(encoding)
    for name, value in chosen.items():
        if value not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {value!r}", option="encoding")
        if value != "direct" and name in sequence_inputs(model):
            raise ConfigError(
                f"input '{name}' is a sequence, fed step by step as it is: it takes no {value} encoding",
                option="encoding",
            )
    return chosen


def sequence_inputs(model: SNNModel) -> list[str]:
    """The data inputs that are sequences: [N, T, ...], one [N, ...] slice fed at each step."""
    return [i["name"] for i in model.inputs if i.get("sequence")]


def sequence_steps(feeds: Feeds, model: SNNModel) -> int | None:
    """The number of steps the sequence inputs of ``feeds`` hold (None without any), or a
    DataError where they differ."""
    steps = {name: feeds[name].shape[1] for name in sequence_inputs(model)}
    if len(set(steps.values())) > 1:
        raise DataError(f"the input sequences differ in length ({steps})")
    return next(iter(steps.values()), None)


def model_feeds(model: SNNModel, x: Inputs, source: str = "input") -> Feeds:
    """``x`` checked against the artifact's data inputs: float32 arrays by input name. A
    sequence input takes [N, T, ...]: its step's shape with the steps after the batch."""
    specs = []
    for entry in model.inputs:
        name, shape = entry["name"], list(entry["shape"])
        if entry.get("sequence"):
            given = x.get(name, x.get(f"x_{name}")) if isinstance(x, dict) else x
            ndim = np.ndim(given) if given is not None else len(shape) + 1
            if ndim != len(shape) + 1:
                dims = ", ".join(str(d) if d is not None else "?" for d in shape[1:])
                raise DataError(
                    f"{source}: input '{name}' takes a sequence [N, T, {dims}] (one input a step), got an array "
                    f"of shape {list(np.shape(given))}"
                )
            shape = shape[:1] + [None] + shape[1:]
        specs.append((name, shape))
    return check_inputs(x, specs, source)


def batches(feeds: Feeds, batch_size: int, static_batch: int | None) -> Iterator[tuple[Feeds, int]]:
    """Yield (feeds of one batch, number of real samples in it); a static batch pads the last."""
    size = static_batch or batch_size
    total = len(next(iter(feeds.values())))
    for start in range(0, total, size):
        batch = {name: x[start : start + size] for name, x in feeds.items()}
        n = len(next(iter(batch.values())))
        if static_batch and n < static_batch:
            batch = {
                name: np.concatenate([b, np.repeat(b[-1:], static_batch - n, axis=0)]) for name, b in batch.items()
            }
        yield batch, n


class Encoder:
    """Feeds of one batch by encoding: ``constant`` once, ``step()`` every step (``varies``:
    whether there is anything to feed every step)."""

    def __init__(
        self, encodings: dict[str, str], batch: Feeds, rng: np.random.Generator, sequences: Sequence[str] = ()
    ):
        self.sequences = {name: batch[name] for name in sequences}
        self.spike_trains = {
            name: batch[name] for name, e in encodings.items() if e == "poisson" and name not in self.sequences
        }
        for name, x in self.spike_trains.items():
            if x.min() < 0 or x.max() > 1:
                raise DataError(
                    f"Poisson encoding needs inputs scaled to [0, 1]; input '{name}' has values in "
                    f"[{x.min():.3g}, {x.max():.3g}]"
                )
        varying = set(self.spike_trains) | set(self.sequences)
        self.constant = {name: x for name, x in batch.items() if name not in varying}
        self.varies = bool(varying)
        self.rng = rng
        self.t = 0

    def step(self) -> Feeds:
        """This step's spikes of every Poisson input, P(spike) = input intensity, and slice of
        every sequence input."""
        feeds = {name: (self.rng.random(x.shape) < x).astype(np.float32) for name, x in self.spike_trains.items()}
        feeds.update({name: np.ascontiguousarray(x[:, self.t]) for name, x in self.sequences.items()})
        self.t += 1
        return feeds
