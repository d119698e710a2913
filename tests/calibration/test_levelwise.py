"""Level-wise simulation (each layer simulated once) gives the thresholds and corrections of the
per-layer path (the network up to each layer simulated again), bit for bit, at a cost linear in
depth."""

from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import helper

import onnx2snn
from onnx2snn.calibration import levelwise
from onnx2snn.runtime import kernel
from tests.helpers import const, make_model, same_calibration, tensor

pytestmark = pytest.mark.skipif(not kernel.available(), reason="level-wise simulation runs the compiled kernel")


def _both(model, x, **options):
    fast = onnx2snn.convert(model, x, **options)
    usable = levelwise.usable
    levelwise.usable = lambda graph: False
    try:
        slow = onnx2snn.convert(model, x, **options)
    finally:
        levelwise.usable = usable
    return fast, slow


@pytest.mark.parametrize(
    "options",
    [
        {"method": "spike-norm", "corrections": ()},
        {"method": "spike-norm:seed", "corrections": ()},
        {"method": "mmse", "corrections": ("bias", "potential")},
        {"method": "max", "corrections": ("potential",), "reset": "zero"},
    ],
)
def test_levelwise_equals_the_per_layer_path_on_a_cnn(digits_cnn, digits, options):
    same_calibration(*_both(digits_cnn, digits[0][:150], timesteps=6, **options))


def _branchy_net():
    """Residual add, concatenation and a max-pool read by several levels."""
    import torch
    from torch import nn

    from tests.helpers import export_torch

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.b = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
            self.c = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU())
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(10 * 16, 5))

        def forward(self, x):
            h = self.a(x)
            r = torch.relu(self.b(h) + h)
            return self.head(torch.cat([r, self.c(h)], dim=1))

    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (70, 1, 8, 8)).astype(np.float32)
    return export_torch(Net(), torch.tensor(x[:1])), x


def test_levelwise_equals_the_per_layer_path_on_branches_pools_and_poisson():
    """Residual add, concatenation and a spiking max-pool, Poisson input."""
    model, x = _branchy_net()
    for encoding in ("direct", "poisson"):
        fast, slow = _both(
            model, x, method="spike-norm", corrections=("bias", "potential"), timesteps=5, encoding=encoding
        )
        same_calibration(fast, slow)


def test_what_levels_keep_for_later_levels_is_spikes_as_bits(monkeypatch):
    """A cheap node read by several levels (the max-pool over spikes that both the residual add
    and the 1x1 branch read) is computed again in each of them: between levels only bits are
    kept, never a float tensor of T x samples (ResNet-50: 3 GB a residual edge)."""
    model, x = _branchy_net()
    kept = []
    fire = levelwise.Levelwise.fire

    def spy(self, level, settings):
        fire(self, level, settings)
        kept.extend(type(v).__name__ for chunk in self.chunks for v in chunk.stored.values())

    monkeypatch.setattr(levelwise.Levelwise, "fire", spy)
    onnx2snn.convert(model, x, method="max", corrections=("potential",), timesteps=5)
    assert kept and set(kept) == {"_Bits"}
    from onnx2snn.runtime.cut import cut_at_neurons

    snn = onnx2snn.convert(model, x, method="max", corrections=(), timesteps=5)
    graph, _, node_level = cut_at_neurons(snn, 5)
    copies = [n for n in graph.nodes if ".at_stage_" in n.name]
    assert copies and all(n.op != "Conv" for n in copies)
    assert len({node_level[n.name] for n in graph.nodes if n.op == "MaxPool"}) > 1  # one per reading level


def test_a_level_runs_its_stage_once_where_its_currents_fit(monkeypatch):
    """The statistics pass keeps its currents for the firing pass (CURRENTS_BUDGET), so the
    stages run once a level; with no room they run twice, and the calibration is the same."""
    model, x = _branchy_net()
    runs = []
    run = levelwise.ort.InferenceSession.run
    monkeypatch.setattr(
        levelwise.ort.InferenceSession, "run", lambda self, *a, **k: runs.append(1) or run(self, *a, **k)
    )

    def convert():
        runs.clear()
        snn = onnx2snn.convert(model, x, method="max", corrections=("potential",), timesteps=5, batch_size=70)
        return snn, len(runs)

    kept, once = convert()
    monkeypatch.setattr(levelwise, "CURRENTS_BUDGET", 0)
    again, twice = convert()
    assert twice > once  # the same ANN passes, stages run again
    same_calibration(kept, again)


def _has_entry(options, key: str) -> bool:
    try:
        return bool(options.get_session_config_entry(key))
    except RuntimeError:  # onnxruntime: no such entry
        return False


def test_stages_share_one_arena_and_give_its_memory_back(monkeypatch):
    """Every level's stage takes its memory from the process's one onnxruntime arena (the same
    calibration as with an arena per stage); a level's last run hands back what the arena holds
    unused (arena shrinkage), and so does the simulation's end."""
    model, x = _branchy_net()
    kwargs = dict(method="max", corrections=("potential",), timesteps=5, batch_size=20)
    options, shrinks = [], []
    stage_options = levelwise.session_options

    def spy_options(*a, **k):
        options.append(stage_options(*a, **k))
        return options[-1]

    run = levelwise.ort.InferenceSession.run

    def spy_run(self, output_names, feeds, run_options=None):
        if run_options is not None:
            shrinks.append(run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage"))
        return run(self, output_names, feeds, run_options)

    released = []
    release = levelwise.release_memory
    monkeypatch.setattr(levelwise, "session_options", spy_options)
    monkeypatch.setattr(levelwise.ort.InferenceSession, "run", spy_run)
    monkeypatch.setattr(levelwise, "release_memory", lambda: released.append(1) or release())
    shared = onnx2snn.convert(model, x, **kwargs)
    assert levelwise.shared_arena(os.getpid())
    assert options and all(o.get_session_config_entry("session.use_env_allocators") == "1" for o in options)
    assert shrinks.count("cpu:0") == len(options) + 1  # each level's stage's last run, and the end
    assert released == [1]
    monkeypatch.setattr(levelwise, "shared_arena", lambda pid=None: False)
    options.clear()
    own = onnx2snn.convert(model, x, **kwargs)
    assert options and not any(_has_entry(o, "session.use_env_allocators") for o in options)
    same_calibration(shared, own)


def _mlp(depth: int):
    rng = np.random.default_rng(depth)
    nodes, inits, name = [], [], "x"
    for i in range(depth):
        nodes += [
            helper.make_node("Gemm", [name, f"w{i}"], [f"h{i}"], name=f"fc{i}", transB=1),
            helper.make_node("Relu", [f"h{i}"], [f"a{i}"], name=f"relu{i}"),
        ]
        inits.append(const(f"w{i}", rng.uniform(0, 0.6, (8, 8))))
        name = f"a{i}"
    nodes.append(helper.make_node("Gemm", [name, "head"], ["y"], name="head", transB=1))
    inits.append(const("head", rng.uniform(0, 1, (3, 8))))
    return make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 3])], inits)


def test_the_cost_of_corrections_is_linear_in_depth(monkeypatch):
    """Neuron passes of the potential correction: two per layer (its gap, then its spikes)."""
    calls = []
    fire, count = kernel.if_bits, kernel.if_counts  # the gap counts spikes, the firing packs them
    monkeypatch.setattr(kernel, "if_bits", lambda *a, **k: calls.append(1) or fire(*a, **k))
    monkeypatch.setattr(kernel, "if_counts", lambda *a, **k: calls.append(1) or count(*a, **k))
    x = np.random.default_rng(0).uniform(0, 1, (40, 8)).astype(np.float32)
    counts = {}
    for depth in (4, 8, 16):
        calls.clear()
        onnx2snn.convert(_mlp(depth), x, "max", corrections=("potential",), timesteps=4, batch_size=40)
        counts[depth] = len(calls)
    assert counts == {4: 8, 8: 16, 16: 32}


def test_multi_spike_conversions_are_calibrated_in_their_own_neurons(monkeypatch):
    """The kernel fires IF neurons (one spike a step, stored as bits): a multi-spike conversion
    never goes level by level, it simulates the network up to each layer in MultiSpikeIF
    neurons. Its thresholds and corrections are those of the per-layer path, and differ from a
    single-spike conversion's (so an IF simulation would have shown)."""
    calls = []
    fire, count = kernel.if_bits, kernel.if_counts  # the gap counts spikes, the firing packs them
    monkeypatch.setattr(kernel, "if_bits", lambda *a, **k: calls.append(1) or fire(*a, **k))
    monkeypatch.setattr(kernel, "if_counts", lambda *a, **k: calls.append(1) or count(*a, **k))
    x = np.random.default_rng(0).uniform(0, 1, (60, 8)).astype(np.float32)
    options = {"method": "spike-norm:seed", "corrections": ("bias", "potential"), "timesteps": 4}
    fast, slow = _both(_mlp(4), x, spike_mode="multi", **options)
    same_calibration(fast, slow)
    assert not calls  # the IF kernel never ran
    single = onnx2snn.convert(_mlp(4), x, **options)
    assert calls  # where it does run
    differ = [
        layer["node"]
        for layer, other in zip(fast.layers, single.layers)
        if not np.array_equal(fast.initial_membrane(layer), single.initial_membrane(other))
        or not np.array_equal(fast.thresholds[layer["node"]], single.thresholds[other["node"]])
    ]
    assert differ
    from onnx2snn.graph import import_graph
    from onnx2snn.neuron import Neurons

    with pytest.raises(ValueError, match="fires IF neurons only, not spike_mode 'multi'"):
        levelwise.Levelwise(import_graph(_mlp(2)), Neurons(timesteps=4, spike_mode="multi"), x, 60)
