"""The compiled IF kernel equals the numpy reference, and sessions with compiled neurons give the
outputs of the ONNX neurons: on every architecture, with max-pools, Poisson input, recorded
tensors and reset to zero."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import onnx2snn
from onnx2snn.neuron import Neurons, if_step, initial_membrane
from onnx2snn.runtime import blocked, kernel
from tests.helpers import mlp

needs_kernel = pytest.mark.skipif(not kernel.available() and not os.environ.get("CI"), reason=kernel.why_unavailable())


def test_the_kernel_is_built_in_ci():
    if os.environ.get("CI"):
        assert kernel.available(), kernel.why_unavailable()


# a random IF layer's description (hypothesis strategies), made by _layer
LAYERS = dict(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    per_channel=st.booleans(),
    reset=st.sampled_from(["subtract", "zero"]),
    steps=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)


def _layer(shape, per_channel, currents, seed):
    """A random IF layer of ``shape``: its threshold(s), currents of shape ``currents``, and its
    membranes' start."""
    rng = np.random.default_rng(seed)
    if per_channel and len(shape) >= 2:
        theta = rng.uniform(0.05, 3.0, (shape[1],) + (1,) * (len(shape) - 2)).astype(np.float32)
    else:
        theta = np.float32(rng.uniform(0.05, 3.0))
    x = rng.normal(0.3, 1.0, currents).astype(np.float32)
    return theta, x, initial_membrane(tuple(shape), theta, 0.5)


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(**LAYERS)
def test_kernel_equals_reference(shape, per_channel, reset, steps, seed):
    theta, x, start = _layer(shape, per_channel, (steps, *shape), seed)
    spikes = kernel.if_scan(x, theta, start, reset == "zero")
    v = start
    for t in range(steps):
        expected, v = if_step(x[t], v, theta, reset)
        np.testing.assert_array_equal(spikes[t], expected)


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(constant=st.booleans(), **LAYERS)
def test_spike_counts_and_rates_are_the_spikes_summed(shape, per_channel, reset, steps, constant, seed):
    """if_counts counts what if_scan fires, and the level-wise rates built on it are the
    spikes' per-channel sums bit for bit (what calibration's corrections compared before)."""
    from onnx2snn.calibration.levelwise import LayerSetting, Levelwise
    from onnx2snn.calibration.reduce import channel_sums

    theta, x, start = _layer(shape, per_channel, shape if constant else (steps, *shape), seed)
    spikes = kernel.if_scan(x, theta, start, reset == "zero", steps if constant else None)
    counts = kernel.if_counts(x, theta, start, reset == "zero", steps if constant else None)
    np.testing.assert_array_equal(counts, (spikes > 0).sum(axis=0))

    class Cut:  # the one attribute Levelwise.rates reads of a layer's cut
        pass

    sim = Levelwise.__new__(Levelwise)
    sim.cuts, sim.reset_to_zero = {"a": Cut()}, reset == "zero"
    sim.cuts["a"].constant = constant
    sim.neurons = Neurons(timesteps=steps)
    got, positions = sim.rates("a", x, LayerSetting(theta, start))
    expected, per = channel_sums(spikes.sum(axis=0, dtype=np.float64))
    np.testing.assert_array_equal(got, expected)
    assert positions == per * steps


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(constant=st.booleans(), **LAYERS)
def test_spikes_packed_as_fired_are_the_spikes_packed(shape, per_channel, reset, steps, constant, seed):
    """if_bits writes if_scan's spikes packed as bits, whatever the rows' lengths (runs of bits
    that start and end inside bytes), and unpack_spikes makes them the spikes again."""
    theta, x, start = _layer(shape, per_channel, shape if constant else (steps, *shape), seed)
    spikes = kernel.if_scan(x, theta, start, reset == "zero", steps if constant else None)
    bits = kernel.if_bits(x, theta, start, reset == "zero", steps if constant else None)
    np.testing.assert_array_equal(bits, np.packbits(spikes.reshape(-1) > 0, bitorder="little"))
    np.testing.assert_array_equal(kernel.unpack_spikes(bits, spikes.shape, theta), spikes)


@needs_kernel
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize(
    "shape, per_channel",
    # rows of 49 values (32 + 8 + 8 + 1 at a time), 57, 3 (masked only), dense rows with a threshold a value
    [((2, 3, 7, 7), True), ((2, 3, 7, 7), False), ((1, 2, 57), True), ((3, 1, 3), False), ((3, 45), True)],
)
def test_counts_and_bits_held_in_registers_equal_the_portable_loops(shape, per_channel, reset, constant, monkeypatch):
    """The vector loops (membranes held in registers over the steps, whole vectors, then the
    last values masked) count and pack what the portable loops do, NaN, infinities and signed
    zeros among the currents, a negative threshold among the channels' (counted, not packed)."""
    steps = 9
    theta, x, start = _layer(shape, per_channel, shape if constant else (steps, *shape), 7)
    flat = x.reshape(-1)
    flat[::11], flat[3::13], flat[5::17], flat[7::19] = np.nan, np.inf, -np.inf, -0.0
    if np.ndim(theta):
        theta = np.where(np.arange(theta.size).reshape(theta.shape) == 1, -theta, theta).astype(np.float32)
    counted, packed = {}, {}
    for vector in (False, True):
        monkeypatch.setattr(kernel, "VECTOR", vector)
        counted[vector] = kernel.if_counts(x, theta, start, reset == "zero", steps if constant else None)
        packed[vector] = kernel.if_bits(x, theta, start, reset == "zero", steps if constant else None)
    np.testing.assert_array_equal(counted[True], counted[False])
    np.testing.assert_array_equal(packed[True], packed[False])
    assert counted[True].any() and packed[True].any()


def test_rows_in_parts_start_where_they_may(monkeypatch):
    """Parts start on multiples of ``align`` (bits: where no byte is shared), and a small call
    or a one-CPU process runs in one part."""
    seen = []
    monkeypatch.setattr(kernel, "threads", lambda: 3)
    kernel._in_parts(21, kernel.PARALLEL_FROM, lambda a, b: seen.append((a, b)), align=4)
    assert sorted(seen) == [(0, 8), (8, 16), (16, 21)]
    seen.clear()
    kernel._in_parts(21, kernel.PARALLEL_FROM - 1, lambda a, b: seen.append((a, b)))
    assert seen == [(0, 21)]
    monkeypatch.setattr(kernel, "threads", lambda: 1)
    kernel._in_parts(21, kernel.PARALLEL_FROM, lambda a, b: seen.append((a, b)))
    assert seen == [(0, 21), (0, 21)]


@needs_kernel
def test_a_forked_child_splits_its_calls_among_threads_of_its_own(monkeypatch):
    """The threads are the process's: a child forked after the parent split a call runs its own
    (the parent's would never start its parts)."""
    import multiprocessing

    monkeypatch.setattr(kernel, "PARALLEL_FROM", 0)
    monkeypatch.setattr(kernel, "threads", lambda: 2)
    theta, x, start = _layer((4, 6, 5, 5), True, (3, 4, 6, 5, 5), 1)
    expected = kernel.if_counts(x, theta, start, False)  # the parent's threads now exist
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(kernel.if_counts, (x, theta, start, False)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def test_kernel_threads_follow_the_cpus_the_quota_and_omp_num_threads(monkeypatch):
    class Quota:  # /sys/fs/cgroup/cpu.max
        text = "max 100000"

        def __init__(self, path):
            pass

        def read_text(self):
            return Quota.text

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(kernel, "Path", Quota)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert kernel.threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "8,2")  # the outer level of a nested list
    assert kernel.threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert kernel.threads() == 4
    Quota.text = "250000 100000"  # two and a half CPUs' worth
    assert kernel.threads() == 2


@needs_kernel
def test_histograms_refuse_ranges_that_do_not_match_the_rows():
    a = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="3 histogram ranges for 1 rows"):
        kernel.histogram(a, False, np.ones(3, np.float32), 64)
    with pytest.raises(ValueError, match="2 rows of counts for 3 rows of values"):
        kernel.histogram_running(a, True, None, np.zeros(2, np.float32), np.zeros((2, 64), np.int64), (-100, 127))


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("shape", [(3, 5, 5, 5), (2, 7, 3), (4, 16, 2, 4), (9, 13), (1, 6, 1, 1)])
def test_kernels_split_among_threads_give_what_one_thread_gives(shape, threads, monkeypatch):
    """Calibration's kernels split a layer's rows among threads: the same counts, bits (parts
    that would share a byte are not cut apart: rows of 25 values, 21 values a step),
    unpacked spikes, histograms and MMSE thresholds as in one call."""
    from onnx2snn.calibration import statistics

    theta, x, start = _layer(shape, True, (7, *shape), 4)
    tops = statistics.power_tops(statistics.row_maxima(x[0], True))
    steps = (7, *shape)

    def everything():
        bits = kernel.if_bits(x, theta, start, False)
        counts = kernel.if_counts(x, theta, start, True)
        histogram = kernel.histogram(list(x), True, tops, 64)
        return {
            "bits": bits,
            "counts": counts,
            "spikes": kernel.unpack_spikes(bits, steps, theta),
            "histogram": histogram,
            "whole layer": kernel.histogram(x[0], False, tops[:1], 64),
            "mmse": kernel.mmse(histogram, tops, tops, np.linspace(0.1, 1, 9, dtype=np.float32), 7, 0.5),
        }

    one = everything()
    monkeypatch.setattr(kernel, "PARALLEL_FROM", 0)
    monkeypatch.setattr(kernel, "threads", lambda: threads)
    calls = []
    parts = kernel._in_parts
    monkeypatch.setattr(kernel, "_in_parts", lambda *a, **k: calls.append(parts(*a, **k)) or calls[-1])
    split = everything()
    assert any(len(c) > 1 for c in calls)  # some call ran in parts
    for name, value in one.items():
        np.testing.assert_array_equal(split[name], value, err_msg=name)


@needs_kernel
def test_stepper_carries_the_membrane_between_calls():
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.5, 1.5, (3, 1)).astype(np.float32)
    x = rng.normal(0.3, 1.0, (2, 3, 5)).astype(np.float32)
    spikes, membrane = np.empty_like(x), np.array(np.broadcast_to(0.5 * theta, x.shape), np.float32, order="C")
    step = kernel.Stepper(x, spikes, membrane, theta, False)
    v = 0.5 * theta
    for _ in range(5):
        step()
        expected, v = if_step(x, v, theta)
        np.testing.assert_array_equal(spikes, expected)
        np.testing.assert_array_equal(membrane, v)


def _both(snn, x, steps, layout=None, **options):
    compiled = onnx2snn.SNNSession(snn, form="step", neurons="compiled", **options)
    plain = onnx2snn.SNNSession(snn, form="step", neurons="onnx", **options)
    assert compiled.neurons == "compiled" and plain.neurons == "onnx"
    if layout is not None:
        assert compiled.layout == layout
    return compiled.run(x, steps, per_step=True), plain.run(x, steps, per_step=True)


@needs_kernel
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_compiled_session_equals_onnx_on_the_digits_cnn(digits_cnn, digits, reset):
    snn = onnx2snn.convert(digits_cnn, digits[0][:200], reset=reset, timesteps=8)
    a, b = _both(snn, digits[2][:40], 24, batch_size=16)
    np.testing.assert_array_equal(a, b)


@needs_kernel
def test_compiled_session_equals_onnx_on_a_per_channel_mlp_with_poisson_input():
    x = np.random.default_rng(0).uniform(0, 1, (50, 8)).astype(np.float32)
    snn = onnx2snn.convert(mlp(hidden=24), x, "max", per_channel=True, encoding="poisson")
    a, b = _both(snn, x, 30, seed=3)
    np.testing.assert_array_equal(a, b)
    # batches of 8: 8 steps a run (compiled.chunk), the last run 6, the Poisson spikes of 8 steps laid out at once
    session = onnx2snn.SNNSession(snn, form="step", batch_size=8, seed=3)
    assert session._compiled.chunk(8, 30) == 8
    a, b = _both(snn, x, 30, seed=3, batch_size=8)
    np.testing.assert_array_equal(a, b)


@needs_kernel
def test_small_batches_run_several_steps_a_call_large_ones_one(digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0][:100], timesteps=8)
    compiled = onnx2snn.SNNSession(snn, form="step")._compiled
    assert compiled.chunk(1, 32) == 16 and compiled.chunk(8, 32) == 8 and compiled.chunk(8, 5) == 5
    assert compiled.chunk(64, 32) == 1 and compiled.chunk(256, 32) == 1
    a, b = _both(snn, digits[2][:7], 21, batch_size=3)  # 21 steps: runs of 16 and 5
    np.testing.assert_array_equal(a, b)


@needs_kernel
def test_large_batches_run_in_tiles_with_the_same_outputs(digits_cnn, digits, monkeypatch):
    """A batch of more than TILE samples runs as tiles, one after the other through all the
    steps (several a call): per step the ONNX neurons' outputs, and the firing counts of every
    layer (recorded tensors); a batch with Poisson input stays whole (its trains are drawn for
    the whole batch step by step)."""
    from onnx2snn.runtime import compiled as compiled_module

    snn = onnx2snn.convert(digits_cnn, digits[0][:100], timesteps=8)
    steps = onnx2snn.SNNSession(snn, form="step")._compiled
    assert steps.tiles(40, 12) == [14, 13, 13] and steps.tiles(16, 12) == [16]
    assert steps.tiles(40, 12, varying=True) == [40]
    assert steps.tiles(40, 12, max_memory=1000) == [40]  # the steps' reads kept until the last tile: too many
    sizes = []
    run = compiled_module.CompiledSteps._run
    monkeypatch.setattr(
        compiled_module.CompiledSteps, "_run", lambda self, feeds, n, *a: sizes.append(n) or run(self, feeds, n, *a)
    )
    a, b = _both(snn, digits[2][:40], 12, batch_size=40)
    assert sizes == [14, 13, 13]
    np.testing.assert_array_equal(a, b)
    x = digits[2][:40]
    assert onnx2snn.activity(snn, x, 12, batch_size=40, neurons="compiled") == onnx2snn.activity(
        snn, x, 12, batch_size=40, neurons="onnx"
    )


@needs_kernel
@pytest.mark.parametrize("name", ["resnet18_style", "densenet_style", "mobilenetv2_style"])
def test_compiled_session_agrees_on_architectures(name):
    pytest.importorskip("torch")
    import torch

    from tests.helpers import export_torch
    from tests.test_architectures import nets

    torch.manual_seed(0)
    images = np.random.default_rng(0).uniform(0, 1, (60, 3, 16, 16)).astype(np.float32)
    model = export_torch(nets()[name].eval(), torch.tensor(images[:1]))
    snn = onnx2snn.convert(model, images[:40], timesteps=8)
    # where onnxruntime has a blocked layout, the residual and inverted-residual nets use it at
    # their later (16+ channel) layers; the DenseNet's concatenations keep it plain
    layout = None if blocked.block_size() is None else "plain" if name == "densenet_style" else "blocked"
    a, b = _both(snn, images[40:], 16, layout)
    # stages may sum a residual Add in another order than the whole step model: float rounding
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@needs_kernel
def test_residual_adds_fused_into_their_convolutions_round_as_the_separate_adds(monkeypatch):
    """Where the blocked stages' convolutions add the residual themselves (blocked.fuse_sums, in
    the Add's place), the currents are those of the separate Adds to float rounding (the sum is
    added before the bias), and so are the outputs."""
    pytest.importorskip("torch")
    import torch

    from tests.helpers import export_torch
    from tests.test_architectures import nets

    if blocked.block_size() is None:
        pytest.skip("onnxruntime has no blocked layout here")
    torch.manual_seed(0)
    images = np.random.default_rng(1).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32)
    model = export_torch(nets()["resnet18_style"].eval(), torch.tensor(images[:1]))
    snn = onnx2snn.convert(model, images[:20], timesteps=8)
    fused = onnx2snn.SNNSession(snn, form="step", batch_size=20)
    ops = [
        (n.op_type, n.domain, len(n.input))
        for session, _ in fused._compiled.stages
        for n in onnx.load_from_string(session._model_bytes).graph.node
    ]
    assert ("Conv", blocked.NCHWC, 4) in ops  # a residual Add went into its convolution (the plain stages keep theirs)
    monkeypatch.setattr(blocked, "fuse_sums", lambda model: model)
    apart = onnx2snn.SNNSession(snn, form="step", batch_size=20)
    a, b = fused.run(images[20:], 12, per_step=True), apart.run(images[20:], 12, per_step=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_fused_convolutions_take_the_place_of_their_adds():
    """fuse_sums keeps the nodes in order (the convolution where the Add was: its other input may
    come from a node after the convolution) and drops the former output's shape."""
    from onnx import TensorProto

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16, 4, 4])
    w = onnx.numpy_helper.from_array(np.ones((16, 16, 1, 1), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["c"], domain=blocked.NCHWC, kernel_shape=[1, 1])
    later = helper.make_node("Conv", ["x", "w"], ["d"], domain=blocked.NCHWC, kernel_shape=[1, 1])
    add = helper.make_node("Add", ["c", "d"], ["y"])
    graph = helper.make_graph([conv, later, add], "g", [x], [y], [w])
    graph.value_info.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 16, 4, 4]))
    out = blocked.fuse_sums(helper.make_model(graph)).graph
    assert [(n.output[0], list(n.input)) for n in out.node] == [("d", ["x", "w"]), ("y", ["x", "w", "", "d"])]
    assert [v.name for v in out.value_info] == []


@needs_kernel
def test_compiled_session_records_what_activity_counts(digits_cnn, digits):
    snn = onnx2snn.convert(digits_cnn, digits[0][:100])
    x = digits[2][:30]
    a = onnx2snn.activity(snn, x, 12, neurons="compiled")
    b = onnx2snn.activity(snn, x, 12, neurons="onnx")
    assert a == b


def test_compiled_neurons_where_the_kernel_is_missing_is_a_config_error(monkeypatch):
    monkeypatch.setattr(kernel, "_library", lambda: "not built (test)")
    snn = onnx2snn.convert(mlp(), np.ones((4, 8), np.float32))
    assert onnx2snn.SNNSession(snn, form="step").neurons == "onnx"  # auto falls back
    with pytest.raises(onnx2snn.ConfigError, match="not built"):
        onnx2snn.SNNSession(snn, form="step", neurons="compiled")


def test_blocked_layout_round_trips():
    from_blocked, to_blocked = blocked.from_blocked, blocked.to_blocked

    a = np.random.default_rng(0).normal(size=(3, 20, 4, 5)).astype(np.float32)
    b = to_blocked(a, 8)
    assert b.shape == (3, 24, 4, 5)
    # channel c of position (h, w) sits at block c // 8, lane c % 8
    assert b.reshape(3, 3, 4, 5, 8)[1, 2, 3, 4, 3] == a[1, 19, 3, 4]
    assert not b.reshape(3, 3, 4, 5, 8)[:, 2, :, :, 4:].any()  # the padding channels are zero
    np.testing.assert_array_equal(from_blocked(b, 20, 8), a)


@needs_kernel
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_blocked_stepper_equals_the_reference(reset, per_channel):
    from_blocked, to_blocked = blocked.from_blocked, blocked.to_blocked

    rng = np.random.default_rng(1)
    shape, block = (2, 12, 3, 5), 8  # 12 channels: the second block half padding
    theta = rng.uniform(0.3, 2.0, (12, 1, 1) if per_channel else ()).astype(np.float32)
    x = rng.normal(0.3, 1.0, shape).astype(np.float32)
    start = initial_membrane(shape, theta, 0.5)
    xb, membrane = to_blocked(x, block), to_blocked(np.broadcast_to(start, shape), block)
    spikes = np.empty_like(xb)
    step = kernel.Stepper(xb, spikes, membrane, theta, reset == "zero", block)
    v = start
    for _ in range(4):
        step()
        expected, v = if_step(x, v, theta, reset)
        np.testing.assert_array_equal(from_blocked(spikes, 12, block), expected)
        np.testing.assert_array_equal(from_blocked(membrane, 12, block), np.broadcast_to(v, shape))
        assert not spikes.reshape(2, 2, 3, 5, 8)[:, 1, :, :, 4:].any()  # padding never fires


@needs_kernel
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("block", [8, 16, 24])
def test_blocked_steps_held_in_registers_equal_the_portable_loop(reset, constant, block, monkeypatch):
    """The vector loop (32 membranes, or 8, held in registers over a call's steps, their
    thresholds by channel within the block) gives the portable loop's spikes and membranes,
    three steps a call, with a current a step or one for all, on blocks of 8, 16 and 24."""
    rng = np.random.default_rng(2)
    n, channels, steps = 2, 2 * block - 4, 3  # the last block part padding
    theta = rng.uniform(0.3, 2.0, (channels, 1, 1)).astype(np.float32)
    shape = (n, channels, 3, 5)
    x = rng.normal(0.3, 1.0, (n if constant else steps * n, channels, 3, 5)).astype(np.float32)
    start = blocked.to_blocked(np.broadcast_to(initial_membrane(shape, theta, 0.5), shape), block)
    got = {}
    for vector in (False, True):
        monkeypatch.setattr(kernel, "VECTOR", vector)
        membrane = start.copy()
        spikes = np.zeros((steps * n, *start.shape[1:]), np.float32)
        step = kernel.Stepper(blocked.to_blocked(x, block), spikes, membrane, theta, reset == "zero", block, constant)
        step(steps)
        step(2)  # the membranes carried into the next call
        got[vector] = spikes, membrane
    np.testing.assert_array_equal(got[True][0], got[False][0])
    np.testing.assert_array_equal(got[True][1], got[False][1])
    assert got[True][0].any()


@needs_kernel
def test_a_blocked_first_layer_takes_its_constant_current_through_onnxruntimes_reorder():
    """The first IF layer's current is the prefix's, computed once: converted to the blocked
    layout by onnxruntime's reorder: the outputs are the ONNX neurons' at batch 5 (5 steps a
    run) and 64."""
    pytest.importorskip("torch")
    import torch
    from torch import nn

    from tests.helpers import export_torch

    if blocked.block_size() is None:
        pytest.skip("this onnxruntime has no blocked layout")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 5),
    )
    images = np.random.default_rng(0).uniform(0, 1, (80, 1, 8, 8)).astype(np.float32)
    snn = onnx2snn.convert(export_torch(net, torch.tensor(images[:1])), images[:40], timesteps=8)
    session = onnx2snn.SNNSession(snn, form="step")
    assert session.layout == "blocked" and session._compiled.reorders  # the prefix's current, reordered
    for batch in (5, 64):
        a, b = _both(snn, images[40:], 13, "blocked", batch_size=batch)
        np.testing.assert_array_equal(a, b)
