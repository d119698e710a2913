"""Calibration sharded over Ray actors: each actor reads its own shard of the data spec and keeps
its part of the level-wise simulation between rounds; the driver merges what they return
(calibration/shards.py: maxima, counts, exact sums), so thresholds and corrections are
bit-identical to one process's. Spike-Norm and the corrections take one round of actors per
level. An actor that dies is replaced on its shard, its simulation's state rebuilt by replaying
the calls that made it (what the statistics pass keeps for the histograms is not replayed: the
new actor's ``counts`` runs the ANN over its shard again, to the same counts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx_graphsurgeon as gs

from ..calibration.shards import CalibrationShard
from ..data import Dataset, Inputs, Preprocessing, Shard, load_data, num_samples
from ..graph import export_model
from ..neuron import Neurons
from .cluster import ray_module, where

STATEFUL = ("start", "set_shifts", "fire", "finish")  # calls that change an actor's state, replayed after a death


class _ShardActor:
    """The Ray actor around a CalibrationShard: it loads its data itself."""

    def __init__(
        self,
        graph_bytes: bytes,
        data: str | Inputs,
        preprocessing: dict | None,
        samples: int | None,
        neurons: Neurons,
        batch_size: int,
        shard: Shard,
        specs: list,
    ):
        from ..data import check_inputs

        if isinstance(data, str):  # read here: nothing large comes through the driver
            data = load_data(data, split="train", preprocessing=Preprocessing.from_dict(preprocessing))
            data = data.sample(samples, neurons.seed).x
        x = check_inputs(data, specs)
        self.shard = CalibrationShard(graph_bytes, x, neurons, batch_size, shard)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.shard, method)(*args)

    def where(self) -> dict[str, Any]:
        return where()


class RayWorkers:
    """Calibration workers on a Ray cluster (one actor per shard), with the interface of
    calibration.shards.LocalWorkers."""

    def __init__(self, graph: gs.Graph, data: str | Inputs, preprocessing, samples, neurons, batch_size, count):
        self.ray = ray_module()
        specs = [(t.name, [d if isinstance(d, int) else None for d in (t.shape or [])]) for t in graph.inputs]
        graph_bytes = export_model(graph).SerializeToString()
        shared = self.ray.put(data) if not isinstance(data, str) else data
        self._args = [
            (graph_bytes, shared, preprocessing, samples, neurons, batch_size, Shard(i, count), specs)
            for i in range(count)
        ]
        self._actor = self.ray.remote(_ShardActor)
        self.actors = [self._actor.remote(*args) for args in self._args]
        self.history: list[tuple[str, tuple]] = []
        self.rounds = 0

    local_inputs = None  # no shard in this process: calibration simulates level by level

    def _replace(self, index: int) -> None:
        """A fresh actor on shard ``index``, brought to where the others are."""
        actor = self._actor.remote(*self._args[index])
        for method, args in self.history:
            self.ray.get(actor.call.remote(method, *args))
        self.actors[index] = actor

    def call(self, method: str, *args: Any) -> list[Any]:
        refs = [actor.call.remote(method, *args) for actor in self.actors]
        results = []
        for index, ref in enumerate(refs):
            for attempt in range(3):
                try:
                    results.append(self.ray.get(ref))
                    break
                except self.ray.exceptions.RayActorError:
                    if attempt == 2:
                        raise
                    self._replace(index)
                    ref = self.actors[index].call.remote(method, *args)
        if method in STATEFUL:
            self.history = [] if method in ("start", "finish") else self.history
            if method != "finish":  # after it an actor holds no simulation, as a fresh one
                self.history.append((method, args))
        self.rounds += 1
        return results

    def report(self) -> dict[str, Any]:
        return {
            "workers": len(self.actors),
            "rounds": self.rounds,
            "shards": self.ray.get([a.where.remote() for a in self.actors]),
        }


def ray_workers(data: str | Dataset, preprocessing: Preprocessing | None, samples: int | None) -> Callable:
    """A factory of RayWorkers for convert's pipeline: (graph, neurons, batch_size, count) ->
    workers on the running cluster; with a data spec each actor reads its own shard."""

    def make(graph: gs.Graph, x: Inputs, neurons: Neurons, batch_size: int, count: int) -> RayWorkers:
        source = data if isinstance(data, str) else x  # arrays: through Ray's object store, once
        prep = preprocessing.to_dict() if preprocessing is not None else None
        return RayWorkers(graph, source, prep, samples if isinstance(data, str) else None, neurons, batch_size, count)

    return make


__all__ = ["RayWorkers", "num_samples", "ray_workers"]
