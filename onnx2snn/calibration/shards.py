"""Calibration's work on one shard of the data, and the workers that hold the shards.

Every statistic calibration needs is a reduction over samples that merges exactly: maxima by
maximum, histogram counts by sum, means through per-sample partial sums added exactly
(reduce.ExactSum). A ``CalibrationShard`` computes them on its part of the data, and keeps its
part of the level-wise simulation (the spikes of the levels already set) from one level to the
next. Calibration asks its workers for the parts (``workers.call(method, *args)``) and merges
them: with one local shard (``LocalWorkers``) that is one process; with Ray actors
(distributed/calibrate.py) the same calls on every shard, the results bit-identical."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

import onnx2snn.calibration.levelwise as levelwise

from ..data import WHOLE, Inputs, Shard, num_samples, take
from ..neuron import Neurons
from ..runtime import kernel
from .reduce import ExactSum, Peak, channel_sums
from .simulate import simulation_subset
from .statistics import CACHE_BUDGET, AnnOutputs, RunningCounts, check_finite, row_counts, row_maxima


class CalibrationShard:
    """Shard ``shard`` of the calibration inputs ``x`` (all of them, as every worker has them):
    the ANN's statistics on its part of ``x`` (cut on batch boundaries) and the level-wise
    simulation of its part of the simulation subset (cut on chunk boundaries)."""

    def __init__(
        self,
        graph: gs.Graph | bytes,
        x: Inputs,
        neurons: Neurons,
        batch_size: int,
        shard: Shard = WHOLE,
    ):
        self.graph = graph if isinstance(graph, gs.Graph) else gs.import_onnx(onnx.load_from_string(graph))
        self.neurons, self.batch_size, self.shard = neurons, batch_size, shard
        start, stop = shard.bounds(num_samples(x), batch_size)
        self.x = take(x, slice(start, stop))
        self.total = num_samples(x)
        self._held: tuple | None = None  # what statistics() keeps for counts()
        self._ann: AnnOutputs | None = None  # the statistics pass's session, for ann_sums
        self.simulated = simulation_subset(x, neurons.seed, self.graph)  # every worker draws the same subset
        self.sim: levelwise.Levelwise | None = None

    # --- the ANN ---------------------------------------------------------------------------
    def statistics(self, names: list[str], per_channel: bool, counts: bool) -> tuple[dict[str, np.ndarray], bool]:
        """One pass of the ANN over this shard: the maxima of ``names`` per row and, where
        ``counts``, what their histograms need (statistics.py): the activations themselves
        where every shard's fit CACHE_BUDGET together (then True), else counts on power-of-two
        ranges. Both are kept for ``counts``; the session is kept for ``ann_sums``."""
        self._held = None
        # kept where all the data's activations fit, as the first batch measures them (declared
        # shapes may hold unknown sizes): alike on every shard; a shard without data agrees
        whole = True
        kept: list[dict[str, np.ndarray]] = []
        running = {name: RunningCounts(per_channel, num_samples(self.x)) for name in names}
        peaks: dict[str, np.ndarray] = {}

        def seen(name: str, peak: np.ndarray | None) -> None:
            if peak is not None:
                check_finite(name, peak)  # values >= 0 (Relu, Clip(0, m)): a NaN or inf is in the maxima
                peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak

        first = True
        if num_samples(self.x):
            for acts in self._ann_outputs(names).stream(self.x, self.batch_size):
                if first:
                    sample_bytes = sum(a.nbytes for a in acts.values()) / max(len(next(iter(acts.values()))), 1)
                    whole, first = sample_bytes * self.total <= CACHE_BUDGET, False
                taken = counts and not whole and kernel.available()
                for name, a in acts.items():
                    # counted by the kernel (now or with the next batches): maxima from the same read as the counts
                    seen(name, running[name].take(a) if taken else row_maxima(a, per_channel))
                    if counts and not whole and not taken:
                        running[name].add(a, peaks[name])
                if counts and whole:
                    kept.append(acts)
            for name in names:  # what still waits: its maxima now
                seen(name, running[name].flush())
        if counts:
            self._held = (names, per_channel, kept if whole else running)
        return peaks, whole

    def counts(self, names: list[str], per_channel: bool, tops: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Histogram counts on the ranges ``tops`` from what ``statistics`` kept (the ANN run
        again where nothing is kept: an actor that was replaced)."""
        held, self._held = self._held, None
        if held is not None and held[:2] == (names, per_channel):
            if isinstance(held[2], dict):
                return {name: held[2][name].on(tops[name]) for name in names}
            stream = iter(held[2])
        else:
            stream = self._ann_outputs(names).stream(self.x, self.batch_size) if num_samples(self.x) else iter(())
        counts: dict[str, np.ndarray] = {}
        for acts in stream:
            for name, a in acts.items():
                counts[name] = row_counts(a, per_channel, tops[name], counts.get(name))
        return counts

    def ann_sums(self, outputs: list[str]) -> dict[str, ExactSum]:
        """Per-channel sums of the ANN's activations on this shard's simulated samples (for the
        corrections' means), on the chunks the level-wise simulation uses."""
        sums = {name: ExactSum() for name in outputs}
        ann = self._ann_outputs(outputs)
        for chunk in self._ann_chunks():
            for acts in ann.stream(chunk, num_samples(chunk)):
                for name, a in acts.items():
                    per_sample, positions = channel_sums(a)
                    sums[name].add(per_sample, positions)
        self._ann = None  # the simulation comes next: its memory, not the ANN's
        return sums

    def _ann_outputs(self, names: list[str]) -> AnnOutputs:
        """The ANN run for ``names``: one session for the statistics and the corrections' means
        (VGG-16's took 12 s to make)."""
        if self._ann is None or self._ann.names != names:
            self._ann = AnnOutputs(self.graph, names)
        return self._ann

    def _ann_chunks(self) -> list[Inputs]:
        """This shard's simulated samples, in the chunks the level-wise simulation cuts; for
        neurons it does not compute (multi-spike), which calibration simulates in one process
        up to each layer, in batches."""
        if levelwise.computes(self.neurons):
            return [chunk.x for chunk in self._open().chunks]
        start, stop = self.shard.bounds(num_samples(self.simulated), self.batch_size)
        return [
            take(self.simulated, slice(i, min(i + self.batch_size, stop))) for i in range(start, stop, self.batch_size)
        ]

    # --- the SNN built so far, level by level ----------------------------------------------
    def _open(self, shifts: bool = False) -> levelwise.Levelwise:
        if self.sim is None or (shifts and not self.sim.shifts):
            self.sim = levelwise.Levelwise(
                self.graph, self.neurons, self.simulated, self.batch_size, shifts=shifts, shard=self.shard
            )
        return self.sim

    def start(self, shifts: bool) -> list[int]:
        """A fresh level-wise simulation (bias corrections go into its stages where ``shifts``);
        its levels. The one ``ann_sums`` opened for its chunks serves where nothing has run in
        it yet (its stages' sessions took 0.2 s to make on a 65 MB MLP, more on VGG-16)."""
        if self.sim is None or self.sim.started or self.sim.shifts != shifts:
            self.sim = None
        return self._open(shifts).levels

    def layers_at(self, level: int) -> list[str]:
        return self._open().layers_at(level)

    def peaks(self, level: int, per_channel: bool, percentile: float | None) -> dict[str, Any]:
        """Spike-Norm's statistic of each layer at ``level`` on this shard: the maximum input
        current per row, or the per-(step, sample) percentiles to be averaged."""
        sim = self._open()
        peaks = {layer: Peak(per_channel, percentile) for layer in sim.layers_at(level)}
        for _, currents in sim.currents(level):
            for layer, current in currents.items():
                for step in sim.steps(layer, current):
                    peaks[layer].add(step)
        return peaks

    def rates(self, level: int, settings: dict[str, levelwise.LayerSetting]) -> dict[str, ExactSum]:
        """Per-channel sums of the spikes of each layer at ``level`` over T steps, per sample."""
        sim = self._open()
        sums = {layer: ExactSum() for layer in settings}
        for _, currents in sim.currents(level):
            for layer, current in currents.items():
                sums[layer].add(*sim.rates(layer, current, settings[layer]))
        return sums

    def finish(self) -> None:
        """The level-wise simulation is done: its stored spikes and stages go, and the memory
        its stages' arena holds goes back (levelwise.release_memory)."""
        self.sim = None
        levelwise.release_memory()

    def set_shifts(self, shifts: dict[str, np.ndarray]) -> None:
        self._open().set_shifts(shifts)

    def fire(self, level: int, settings: dict[str, levelwise.LayerSetting]) -> None:
        self._open().fire(level, settings)


class LocalWorkers:
    """Calibration's shards in this process: ``call`` runs a method on each, in turn."""

    def __init__(self, shards: list[CalibrationShard]):
        self.shards = shards

    @classmethod
    def of(cls, graph: gs.Graph, x: Inputs, neurons: Neurons, batch_size: int) -> LocalWorkers:
        """All of ``x`` in one shard."""
        return cls([CalibrationShard(graph, x, neurons, batch_size)])

    def call(self, method: str, *args: Any) -> list[Any]:
        return [getattr(shard, method)(*args) for shard in self.shards]

    @property
    def local_inputs(self) -> Inputs | None:
        """The calibration inputs, where one local shard holds them all (for the paths that
        simulate the network up to each layer, which run in this process only)."""
        return self.shards[0].x if len(self.shards) == 1 and self.shards[0].shard.count == 1 else None


def merge_sums(parts: list[dict[str, ExactSum]]) -> dict[str, ExactSum]:
    merged: dict[str, ExactSum] = {}
    for part in parts:
        for name, value in part.items():
            merged[name] = merged[name].merge(value) if name in merged else value
    return merged


def levelwise_ok(workers, graph: gs.Graph, neurons: Neurons) -> bool:
    """Whether calibration simulates level by level: where the kernel is built and the batch
    free (levelwise.usable), the neurons fire single spikes (levelwise.computes) and, in one
    process, where the stored spikes fit (levelwise.fits); otherwise it simulates the network up
    to each layer, which only one process does."""
    from ..errors import ConfigError

    usable = levelwise.computes(neurons) and levelwise.usable(graph)
    local = getattr(workers, "local_inputs", None)
    if local is None:
        if not usable:
            why = levelwise.why_not(graph, neurons)
            raise ConfigError(f"distributed calibration needs the compiled IF kernel ({why})")
        return True
    return usable and levelwise.fits(graph, neurons, simulation_subset(local, neurons.seed, graph))
