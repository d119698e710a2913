"""The data inputs of a session, in one place: what the caller gives (one array, or a dict of
arrays by input name) checked against the artifact's ``inputs``, split into batches, and
turned into each step's feeds by each input's encoding (``direct``: the same value every step,
fed once to the time-invariant prefix; ``poisson``: a fresh seeded Bernoulli spike train of
the input intensities every step)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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
    for value in chosen.values():
        if value not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {value!r}", option="encoding")
    return chosen


def model_feeds(model: SNNModel, x: Inputs, source: str = "input") -> Feeds:
    """``x`` checked against the artifact's data inputs: float32 arrays by input name."""
    return check_inputs(x, [(i["name"], i["shape"]) for i in model.inputs], source)


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
    """Feeds of one batch by encoding: ``constant`` once, ``step()`` every step."""

    def __init__(self, encodings: dict[str, str], batch: Feeds, rng: np.random.Generator):
        self.spike_trains = {name: batch[name] for name, e in encodings.items() if e == "poisson"}
        for name, x in self.spike_trains.items():
            if x.min() < 0 or x.max() > 1:
                raise DataError(
                    f"Poisson encoding needs inputs scaled to [0, 1]; input '{name}' has values in "
                    f"[{x.min():.3g}, {x.max():.3g}]"
                )
        self.constant = {name: x for name, x in batch.items() if name not in self.spike_trains}
        self.rng = rng

    def step(self) -> Feeds:
        """This step's spikes of every Poisson input, P(spike) = input intensity."""
        return {name: (self.rng.random(x.shape) < x).astype(np.float32) for name, x in self.spike_trains.items()}
