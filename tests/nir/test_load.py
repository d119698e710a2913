"""NIR in: graphs that sinabs, Norse and snnTorch export become artifacts whose outputs, step by
step on the same spike input, equal the exporting framework's own simulation."""

from __future__ import annotations

import numpy as np
import pytest

import onnx2snn

pytest.importorskip("nir")
torch = pytest.importorskip("torch")
N, T = 6, 30


def spikes(shape, p=0.3, seed=0) -> np.ndarray:
    """A random spike sequence [N, T, *shape]."""
    return (np.random.default_rng(seed).random((N, T, *shape)) < p).astype(np.float32)


def raw_outputs(snn: onnx2snn.SNNModel, x: np.ndarray) -> np.ndarray:
    """The artifact's output at every step, [N, T, ...] (not averaged)."""
    session = onnx2snn.SNNSession(snn)
    # copied as they come: the values are the session's buffers, rewritten by the next step
    steps = [values[snn.outputs[0]].copy() for _, _, _, values in session.iter_steps(x)]
    return np.stack(steps, axis=1)


def _seeded(module, scale=1.0):
    """Uniform weights and biases in [-scale, scale] for the linear layers (neurons keep theirs),
    multiples of 1/64: their sums over spikes are exact in float32, so no summation order (torch's
    or onnxruntime's kernels) can move a membrane across its threshold."""
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                for p in layer.parameters():
                    p.copy_(torch.round(torch.empty_like(p).uniform_(-scale, scale) * 64) / 64)
    return module


def test_sinabs_iaf_network():
    """sinabs' IAF fires as many spikes as thresholds crossed: read with --spike-mode multi."""
    sinabs = pytest.importorskip("sinabs")
    import sinabs.layers as sl

    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        sl.IAFSqueeze(batch_size=N, spike_threshold=0.3),
        sl.SumPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        sl.IAFSqueeze(batch_size=N, spike_threshold=0.5),
    )
    _seeded(net, 0.6)
    x = spikes((2, 8, 8), p=0.6)
    flat = torch.from_numpy(x).reshape(N * T, 2, 8, 8)
    with torch.no_grad():
        net(flat)  # sinabs needs its states shaped before export
        graph = sinabs.to_nir(net, flat)
        for layer in net:
            if isinstance(layer, sl.IAFSqueeze):
                layer.reset_states()
        theirs = net(flat).reshape(N, T, 5).numpy()
    # sinabs' graph leaves Flatten's input type open, which nir 1.0.4 cannot write: read the graph itself
    snn = onnx2snn.from_nir(graph, spike_mode="multi")
    assert {layer["op"] for layer in snn.layers} == {"IF"}
    assert theirs.max() >= 2  # several spikes in a step do happen here
    np.testing.assert_array_equal(raw_outputs(snn, x), theirs)
    single = onnx2snn.from_nir(graph)  # NIR's own reading: one spike at most
    assert raw_outputs(single, x).max() == 1


def test_norse_iaf_network(tmp_path):
    """Norse's IAF adds its input, fires above threshold and resets to 0."""
    norse = pytest.importorskip("norse.torch")
    import nir

    nn = torch.nn
    net = norse.SequentialState(nn.Linear(8, 6), norse.IAFCell(), nn.Linear(6, 4), norse.IAFCell())
    _seeded(net, 0.8)
    x = spikes((8,))
    graph = norse.to_nir(net, torch.zeros(1, 8))
    nir.write(str(tmp_path / "norse.nir"), graph)
    state, theirs = None, []
    with torch.no_grad():
        for t in range(T):
            out, state = net(torch.from_numpy(x[:, t]), state)
            theirs.append(out.numpy())
    snn = onnx2snn.from_nir(tmp_path / "norse.nir", reset="zero")
    got = raw_outputs(snn, x)
    assert got.sum() > 0
    np.testing.assert_array_equal(got, np.stack(theirs, axis=1))


def test_norse_lif_box_network(tmp_path):
    """Norse's LIFBox: v += dt / tau_mem (v_leak - v + i); its file says tau = dt * tau_mem (dt =
    1e-3), so the Euler step that reproduces it is dt**2."""
    norse = pytest.importorskip("norse.torch")
    import nir

    nn = torch.nn
    p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor(200.0), v_th=torch.as_tensor(0.3))
    net = norse.SequentialState(nn.Linear(8, 6), norse.LIFBoxCell(p), nn.Linear(6, 4), norse.LIFBoxCell(p))
    _seeded(net, 1.0)
    x = spikes((8,)) * 4
    graph = norse.to_nir(net, torch.zeros(1, 8))
    nir.write(str(tmp_path / "norse_lif.nir"), graph)
    state, theirs = None, []
    with torch.no_grad():
        for t in range(T):
            out, state = net(torch.from_numpy(x[:, t]), state)
            theirs.append(out.numpy())
    snn = onnx2snn.from_nir(tmp_path / "norse_lif.nir", reset="zero", dt=1e-6)
    assert {layer["op"] for layer in snn.layers} == {"LIF"}
    got = raw_outputs(snn, x)
    assert got.sum() > 0
    np.testing.assert_array_equal(got, np.stack(theirs, axis=1))


def test_snntorch_leaky_and_synaptic_network(tmp_path):
    """snnTorch writes tau = dt / (1 - beta), r = tau / dt with dt = 1e-4: read with that dt, its
    Leaky and Synaptic neurons (reset to zero, immediate) step as snnTorch steps them."""
    snn_torch = pytest.importorskip("snntorch")
    import nir

    if "v_reset" not in getattr(nir.LIF, "__dataclass_fields__", {}):
        pytest.skip(f"snnTorch 1.0 exports with nir >= 1.0.5 (this is {nir.__version__})")
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    nn = torch.nn
    common = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    net = nn.Sequential(
        nn.Linear(8, 6),
        # parameters per neuron: snnTorch's export infers its layers' sizes from them
        snn_torch.Leaky(beta=torch.full((6,), 0.8), threshold=torch.full((6,), 0.7), **common),
        nn.Linear(6, 4),
        snn_torch.Synaptic(
            alpha=torch.full((4,), 0.6),
            beta=torch.full((4,), 0.85),
            threshold=torch.full((4,), 0.9),
            output=True,
            **common,
        ),
    )
    _seeded(net, 1.0)
    x = spikes((8,)) * 2
    graph = export_to_nir(net, torch.zeros(1, 8), ignore_dims=[0])
    nir.write(str(tmp_path / "snntorch.nir"), graph)
    snn_utils.reset(net)
    theirs = []
    with torch.no_grad():
        for t in range(T):
            out = net(torch.from_numpy(x[:, t]))
            theirs.append((out[0] if isinstance(out, tuple) else out).numpy())
    snn = onnx2snn.from_nir(tmp_path / "snntorch.nir", dt=1e-4)
    assert [layer["op"] for layer in snn.layers] == ["LIF", "CubaLIF"]
    got = raw_outputs(snn, x)
    assert got.sum() > 0
    # the file holds tau = dt / (1 - beta) and r = tau / dt in float32 (dt = 1e-4 is no binary
    # fraction), so one Euler step reproduces beta * v + x only to rounding: a membrane landing
    # within that of its threshold may fire a step apart (here 2 of 720 outputs)
    mismatch = np.mean(got != np.stack(theirs, axis=1))
    assert mismatch <= 0.01


def test_refuses_what_it_cannot_read(tmp_path):
    import nir

    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "delay": nir.Delay(delay=np.ones(3, np.float32)),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "delay"), ("delay", "output")],
    )
    with pytest.raises(onnx2snn.ConversionError, match="node 'delay' \\(Delay\\): not read yet"):
        onnx2snn.from_nir(graph)
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    with pytest.raises(onnx2snn.ModelError, match="bad.nir: not a NIR graph"):
        onnx2snn.from_nir(tmp_path / "bad.nir")


def test_sequence_input_is_checked():
    from tests.nir.helpers import nir_ready

    snn = onnx2snn.from_nir(onnx2snn.to_nir(nir_ready()).graph)
    session = onnx2snn.SNNSession(snn)
    with pytest.raises(onnx2snn.DataError, match=r"takes a sequence \[N, T, 1, 8, 8\]"):
        session.run(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(onnx2snn.ConfigError, match="has 3 steps, 5 were asked for"):
        session.run(np.zeros((2, 3, 1, 8, 8), np.float32), 5)
    assert session.run(np.zeros((2, 3, 1, 8, 8), np.float32), per_step=True).shape[0] == 3


def _leaky_graph():
    """Affine -> LIF -> Affine -> CubaLIF, as nir 1.0.4 writes them."""
    import nir

    rng = np.random.default_rng(0)
    q = lambda a: (np.round(a * 64) / 64).astype(np.float32)  # noqa: E731 (exact sums, as _seeded)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([5])}),
            "fc1": nir.Affine(weight=q(rng.uniform(-1, 1, (6, 5))), bias=q(rng.uniform(0, 0.2, 6))),
            "lif": nir.LIF(
                tau=np.full(6, 4.0, np.float32),
                r=np.full(6, 2.0, np.float32),
                v_leak=np.zeros(6, np.float32),
                v_threshold=np.full(6, 0.5, np.float32),
            ),
            "fc2": nir.Linear(weight=q(rng.uniform(-1, 1, (3, 6)))),
            "cuba": nir.CubaLIF(
                tau_syn=np.full(3, 2.0, np.float32),
                tau_mem=np.full(3, 4.0, np.float32),
                r=np.full(3, 2.0, np.float32),
                v_leak=np.zeros(3, np.float32),
                v_threshold=np.full(3, 0.25, np.float32),
                w_in=np.ones(3, np.float32),
            ),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "cuba"), ("cuba", "output")],
    )


def test_a_graph_read_from_nir_is_an_artifact_of_format_3(tmp_path):
    """Its sequence input is a data input of the artifact's list, its membranes start at a
    constant output (0), its CubaLIF current is a state; saved and loaded it passes the
    metadata checks, and inlined (standard operators only) it computes what the step form does."""
    snn = onnx2snn.from_nir(_leaky_graph(), reset="subtract", dt=1.0)
    meta = snn.metadata
    assert meta["format"] == 3 and meta["batch"] == "N" and meta["timesteps"] == 0
    assert meta["inputs"] == [{"name": "input", "shape": [None, 5], "encoding": "direct", "sequence": True}]
    assert [layer["op"] for layer in snn.layers] == ["LIF", "CubaLIF"]
    assert all(np.all(snn.initial_membrane(layer) == 0) for layer in snn.layers)
    assert {s.input for s in snn.states()} == {"lif.membrane", "cuba.membrane", "cuba.current"}
    loaded = onnx2snn.load(snn.save(tmp_path / "leaky.onnx"))
    x = spikes((5,), p=0.5)
    expected = raw_outputs(loaded, x)
    assert expected.sum() > 0
    inlined = onnx2snn.inline(loaded)
    assert not inlined.proto.functions and not any(n.domain == "onnx2snn" for n in inlined.proto.graph.node)
    np.testing.assert_array_equal(raw_outputs(inlined, x), expected)
    # fed as it is: no Poisson encoding, no unrolled form
    with pytest.raises(onnx2snn.ConfigError, match="input 'input' is a sequence, fed step by step"):
        onnx2snn.SNNSession(loaded, encoding="poisson")
    with pytest.raises(onnx2snn.ConfigError, match="leaky neurons or a sequence input"):
        onnx2snn.unroll(loaded, 4)
    assert onnx2snn.SNNSession(loaded).form == "step"


def test_corrupt_neuron_metadata_is_named(tmp_path):
    """A CubaLIF layer's current is part of the contract: metadata without it is refused by field."""
    import json

    snn = onnx2snn.from_nir(_leaky_graph(), reset="subtract", dt=1.0)
    meta = dict(snn.metadata)
    meta["layers"] = [dict(layer) for layer in meta["layers"]]
    del meta["layers"][1]["current"]
    proto = snn.proto
    next(p for p in proto.metadata_props if p.key == "onnx2snn").value = json.dumps(meta)
    with pytest.raises(onnx2snn.ModelError, match=r"layers\[1\]\.current is missing"):
        onnx2snn.SNNModel(proto)
