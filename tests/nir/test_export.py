"""NIR out: an artifact written as NIR and read back (here, and by sinabs) computes what the
artifact computes; what NIR cannot say is refused by node."""

from __future__ import annotations

import numpy as np
import pytest

import onnx2snn
from onnx2snn.nir.export import relay_shortcuts
from tests.helpers import make_model, tensor
from tests.nir.helpers import inputs, nir_ready

pytest.importorskip("nir")
T = 24


def _per_step(snn: onnx2snn.SNNModel, x: np.ndarray) -> np.ndarray:
    """The artifact's running mean output after every step, [T, N, classes]."""
    return onnx2snn.SNNSession(snn, form="step").run(x, T, per_step=True)


@pytest.mark.parametrize("spike_mode, corrections", [("single", ()), ("multi", ()), ("single", ("bias",))])
def test_written_and_read_back_it_computes_the_same(tmp_path, spike_mode, corrections):
    """Also with bias corrections: a constant current, folded into the bias before the neuron."""
    snn = nir_ready(spike_mode=spike_mode, corrections=corrections)
    export = onnx2snn.to_nir(snn)
    onnx2snn.save_nir(export, tmp_path / "net.nir")
    back = onnx2snn.from_nir(tmp_path / "net.nir")  # conventions from the file: what it records
    assert back.metadata["spike_mode"] == spike_mode
    x = inputs()
    sequence = np.repeat(x[:, None], T, axis=1)
    np.testing.assert_allclose(
        onnx2snn.SNNSession(back).run(sequence, per_step=True), _per_step(snn, x), rtol=1e-4, atol=1e-5
    )


def test_thresholds_carry_the_scale_of_their_input():
    """NIR's spikes are unit: each IF's threshold becomes theta / (the amplitude of its input), and
    the first one (fed by the image, scale 1) keeps theta itself."""
    snn = nir_ready()
    export = onnx2snn.to_nir(snn)
    first = snn.layers[0]
    graph_if = export.graph.nodes[next(r["nir"].split()[1] for r in export.nodes if r["node"] == first["node"])]
    theta = np.broadcast_to(snn.initializer(first["threshold"]), graph_if.v_threshold.shape)
    np.testing.assert_array_equal(graph_if.v_threshold, theta)
    assert np.all(graph_if.r == 1)


def test_conv_shortcut_is_relayed_through_its_block():
    export = onnx2snn.to_nir(nir_ready())
    assert not any("shortcut" in name for name in export.graph.nodes)
    assert any("shortcut" in line and "relay" in line for line in export.deviations)
    kept = onnx2snn.to_nir(nir_ready(), relay_shortcuts=False)
    assert any("shortcut" in name for name in kept.graph.nodes)
    assert relay_shortcuts(dict(kept.graph.nodes), list(kept.graph.edges))  # the same rewrite, on its own


def test_nonzero_initial_membranes_are_refused_by_node_or_dropped():
    snn = nir_ready(v_init=0.5)
    with pytest.raises(onnx2snn.ConversionError) as err:
        onnx2snn.to_nir(snn)
    assert all(layer["node"] in str(err.value) for layer in snn.layers)
    assert "starts its membranes above zero" in str(err.value)
    export = onnx2snn.to_nir(snn, initial_membrane="drop")
    assert sum("initial membrane dropped" in d for d in export.deviations) == len(snn.layers)


def test_poisson_encoding_is_refused():
    with pytest.raises(onnx2snn.ConversionError, match="poisson encoding"):
        onnx2snn.to_nir(nir_ready(encoding="poisson"))


def test_spiking_max_pool_is_refused_by_node():
    from onnx import helper

    from tests.helpers import const

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2"], ["y"], name="fc", transB=1),
    ]
    ann = make_model(
        nodes,
        [tensor("x", ["N", 1, 4, 4])],
        [tensor("y", ["N", 2])],
        [const("w", rng.normal(0, 1, (2, 1, 3, 3))), const("w2", rng.normal(0, 1, (2, 8)))],
    )
    snn = onnx2snn.convert(ann, rng.uniform(0, 1, (16, 1, 4, 4)).astype(np.float32), v_init=0.0, corrections=())
    with pytest.raises(onnx2snn.ConversionError, match="node 'pool' \\(MaxPool\\): a spiking max-pool"):
        onnx2snn.to_nir(snn)


def test_sinabs_simulates_the_file_as_onnx2snn_does(tmp_path):
    """sinabs 3.1 reads the file (from_nir) and, set as the export report says, gives the
    artifact's outputs step by step."""
    sinabs = pytest.importorskip("sinabs")
    torch = pytest.importorskip("torch")
    import nir
    import sinabs.layers as sl

    snn = nir_ready()
    onnx2snn.save_nir(onnx2snn.to_nir(snn), tmp_path / "net.nir")
    x = inputs()
    n = len(x)
    net = sinabs.from_nir(nir.read(str(tmp_path / "net.nir")), batch_size=n)
    for module in net.modules():
        if isinstance(module, sl.IAFSqueeze):
            module.min_v_mem, module.spike_fn = None, sinabs.activation.SingleSpike
    repeated = torch.from_numpy(x)[:, None].expand(n, T, 1, 8, 8).reshape(n * T, 1, 8, 8)
    with torch.no_grad():
        out = net(repeated)
    out = (out[0] if isinstance(out, tuple) else out).reshape(n, T, -1).numpy()
    means = np.cumsum(out, axis=1) / np.arange(1, T + 1)[None, :, None]
    np.testing.assert_allclose(means.transpose(1, 0, 2), _per_step(snn, x), rtol=1e-4, atol=1e-4)


def test_the_file_holds_only_what_nir_1_0_4_reads(tmp_path):
    """sinabs pins nir 1.0.4, whose reader refuses fields later versions write (IF's v_reset):
    whatever nir writes here, the file has none of them."""
    import h5py

    onnx2snn.save_nir(onnx2snn.to_nir(nir_ready()), tmp_path / "net.nir")
    with h5py.File(tmp_path / "net.nir", "r") as f:
        nodes = f["node"]["nodes"]
        kinds = {name: nodes[name]["type"][()].decode() for name in nodes}
        assert "IF" in kinds.values()
        for name, kind in kinds.items():
            assert kind != "IF" or set(nodes[name].keys()) == {"type", "r", "v_threshold"}
    graph, version = onnx2snn.read_nir(tmp_path / "net.nir")
    assert version and len(graph.nodes) == len(kinds)


def test_conv1d_network_round_trip(tmp_path):
    from onnx import helper

    from tests.helpers import const

    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1], strides=[2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1),
    ]
    ann = make_model(
        nodes,
        [tensor("x", ["N", 2, 9])],
        [tensor("y", ["N", 3])],
        [
            const("w", rng.normal(0, 1, (4, 2, 3))),
            const("b", rng.normal(0, 0.1, 4)),
            const("w2", rng.normal(0, 1, (3, 20))),
            const("b2", rng.normal(0, 0.1, 3)),
        ],
    )
    x = rng.uniform(0, 1, (16, 2, 9)).astype(np.float32)
    snn = onnx2snn.convert(ann, x, method="max", v_init=0.0, corrections=())
    onnx2snn.save_nir(onnx2snn.to_nir(snn), tmp_path / "net.nir")
    back = onnx2snn.from_nir(tmp_path / "net.nir")
    got = onnx2snn.SNNSession(back).run(np.repeat(x[:, None], T, axis=1), per_step=True)
    np.testing.assert_allclose(got, onnx2snn.SNNSession(snn).run(x, T, per_step=True), rtol=1e-4, atol=1e-5)
