"""Which runtimes, simplifiers and converters take onnx2snn's artifacts, and whether their outputs
equal onnxruntime's.

A few small artifacts (a spiking MaxPool with both corrections, a residual block with a softmax
head, a Concat of two branches, Poisson input, two data inputs) in three forms each:

- ``step``: the artifact as written (IF as a model-local function), driven T steps by a loop
  that knows only the artifact's contract (its inputs, states and their initial values);
- ``inlined``: ``onnx2snn export --inline`` (every IF in standard operators), driven the same way;
- ``unrolled``: ``onnx2snn unroll`` (all T steps in one run, a Scan per IF layer; direct
  encoding only), and ``unrolled-no-scan`` (``unroll --no-scan``: each layer's steps as plain nodes).

Consumers: onnxruntime (the reference), onnx's reference evaluator, OpenVINO, tract, onnxsim and
onnxslim (the simplified file, then run by onnx2snn), onnx2torch (where it imports) and, with
``--js``, onnxruntime-node and onnxruntime-web (wasm) in Node and in headless Chromium (a page
served on 127.0.0.1 only). Each cell compares the decoded output after every step with
onnxruntime's (``TOLERANCE``, float rounding).

    python benchmarks/compat.py --js --onnx2torch-python VENV/bin/python
                                           # writes results/compat.{md,json} and the README's matrix

``tests/test_compat.py`` runs the Python consumers and checks the committed matrix's cells.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnx2snn

RESULTS = Path(__file__).parent / "results"
TIMESTEPS = 8
SAMPLES = 4
TOLERANCE = 1e-4  # max |difference| of the decoded outputs, every step, relative to their largest value
FORMS = ("step", "inlined", "unrolled", "unrolled-no-scan")
HEADERS = {
    "step": "step artifact",
    "inlined": "inlined (`export --inline`)",
    "unrolled": "unrolled (`unroll`)",
    "unrolled-no-scan": "unrolled, no Scan (`unroll --no-scan`)",
}


# --- the artifacts --------------------------------------------------------------------------
def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "compat", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _value(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _weights(rng: np.random.Generator, **shapes) -> dict[str, np.ndarray]:
    return {k: rng.normal(0.1 if k.startswith("b") else 0.0, 0.4, s) for k, s in shapes.items()}


def maxpool_net(rng):
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a1"], name="relu1"),
        n("MaxPool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["a2"], name="relu2"),
        n("Flatten", ["a2"], ["f"], name="flat"),
        n("Gemm", ["f", "w3", "b3"], ["y"], name="head", transB=1),
    ]
    w = _weights(rng, w1=(4, 2, 3, 3), b1=(4,), w2=(4, 4, 3, 3), b2=(4,), w3=(5, 36), b3=(5,))
    return _model(nodes, [_value("x", ["N", 2, 6, 6])], [_value("y", ["N", 5])], w)


def residual_net(rng):
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a1"], name="relu1"),
        n("Conv", ["a1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        n("Add", ["c2", "a1"], ["r"], name="skip"),
        n("Relu", ["r"], ["a2"], name="relu2"),
        n("GlobalAveragePool", ["a2"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["f", "w3", "b3"], ["logits"], name="head", transB=1),
        n("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    w = _weights(rng, w1=(4, 2, 3, 3), b1=(4,), w2=(4, 4, 3, 3), b2=(4,), w3=(3, 4), b3=(3,))
    return _model(nodes, [_value("x", ["batch", 2, 6, 6])], [_value("probabilities", ["batch", 3])], w)


def concat_net(rng):
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="left", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a1"], name="relu_left"),
        n("Conv", ["x", "w2", "b2"], ["c2"], name="right", kernel_shape=[1, 1]),
        n("Clip", ["c2", "zero", "six"], ["a2"], name="relu6_right"),
        n("Concat", ["a1", "a2"], ["cat"], name="concat", axis=1),
        n("AveragePool", ["cat"], ["p"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["p"], ["f"], name="flat"),
        n("Gemm", ["f", "w3", "b3"], ["y"], name="head", transB=1),
    ]
    w = _weights(rng, w1=(3, 2, 3, 3), b1=(3,), w2=(2, 2, 1, 1), b2=(2,), w3=(4, 45), b3=(4,))
    w.update(zero=np.float32(0), six=np.float32(6))
    return _model(nodes, [_value("x", ["N", 2, 6, 6])], [_value("y", ["N", 4])], w)


def mlp(rng):
    n = helper.make_node
    nodes = [
        n("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
        n("Relu", ["h1"], ["a1"], name="relu1"),
        n("Gemm", ["a1", "w2", "b2"], ["h2"], name="fc2", transB=1),
        n("Relu", ["h2"], ["a2"], name="relu2"),
        n("Gemm", ["a2", "w3", "b3"], ["y"], name="fc3", transB=1),
    ]
    w = _weights(rng, w1=(16, 10), b1=(16,), w2=(12, 16), b2=(12,), w3=(4, 12), b3=(4,))
    return _model(nodes, [_value("x", ["N", 10])], [_value("y", ["N", 4])], w)


def two_input_net(rng):
    n = helper.make_node
    nodes = [
        n("Conv", ["image", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a1"], name="relu_image"),
        n("GlobalAveragePool", ["a1"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["side", "w2", "b2"], ["s"], name="side_fc", transB=1),
        n("Relu", ["s"], ["a2"], name="relu_side"),
        n("Concat", ["f", "a2"], ["joint"], name="concat", axis=1),
        n("Gemm", ["joint", "w3", "b3"], ["y"], name="head", transB=1),
    ]
    w = _weights(rng, w1=(4, 2, 3, 3), b1=(4,), w2=(5, 3), b2=(5,), w3=(3, 9), b3=(3,))
    inputs = [_value("image", ["N", 2, 6, 6]), _value("side", ["N", 3])]
    return _model(nodes, inputs, [_value("y", ["N", 3])], w)


def _uniform(rng, shape, n):
    return rng.uniform(0, 1, (n, *shape)).astype(np.float32)


def artifacts() -> dict[str, tuple[onnx2snn.SNNModel, dict[str, np.ndarray]]]:
    """name -> (SNN artifact, test inputs by name), each calibrated on 64 random samples."""
    rng = np.random.default_rng(0)
    made = {}
    image = (2, 6, 6)
    for name, build, kwargs in (
        ("MaxPool", maxpool_net, {"corrections": ("bias", "potential")}),
        ("residual + softmax", residual_net, {}),
        ("Concat + ReLU6", concat_net, {"method": "max", "per_channel": False, "corrections": ()}),
    ):
        model = build(rng)
        snn = onnx2snn.convert(model, _uniform(rng, image, 64), timesteps=TIMESTEPS, **kwargs)
        made[name] = (snn, {model.graph.input[0].name: _uniform(rng, image, SAMPLES)})
    snn = onnx2snn.convert(mlp(rng), _uniform(rng, (10,), 64), timesteps=TIMESTEPS, encoding="poisson")
    made["Poisson"] = (snn, {"x": _uniform(rng, (10,), SAMPLES)})
    cal = {"image": _uniform(rng, image, 64), "side": _uniform(rng, (3,), 64)}
    snn = onnx2snn.convert(two_input_net(rng), cal, timesteps=TIMESTEPS, encoding={"side": "poisson"})
    made["two inputs (direct + Poisson)"] = (snn, {"image": _uniform(rng, image, SAMPLES), "side": cal["side"][:4]})
    return made


_FORMS: dict[tuple[int, str], onnx.ModelProto | None] = {}
_REFERENCES: dict[int, np.ndarray] = {}


def form_of(snn: onnx2snn.SNNModel, form: str) -> onnx.ModelProto | None:
    """The ONNX file of ``form``; None where the form does not exist (unrolled Poisson input)."""
    key = (id(snn), form)
    if key not in _FORMS:
        _FORMS[key] = _make_form(snn, form)
    return _FORMS[key]


def _make_form(snn: onnx2snn.SNNModel, form: str) -> onnx.ModelProto | None:
    if form == "step":
        return snn.proto
    if form == "inlined":
        return onnx2snn.inline(snn).proto
    if any(i["encoding"] != "direct" for i in snn.inputs):
        return None
    return onnx2snn.unroll(snn, TIMESTEPS, check=True, scan=form == "unrolled")


# --- driving a form with any runtime ----------------------------------------------------------
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # feeds -> every graph output by name


def _softmax(mean: np.ndarray, activation: dict | None) -> np.ndarray:
    if not activation:
        return mean
    z = mean - mean.max(axis=activation["axis"], keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=activation["axis"], keepdims=True)
    return np.log(p) if activation["op"] == "LogSoftmax" else p


def drive(snn: onnx2snn.SNNModel, form: str, run: Runner, x: dict[str, np.ndarray]) -> np.ndarray:
    """The decoded output after every step, [T, N, ...], from a runner of ``form``: the step
    forms run T times, feeding states back by the names in the metadata (initial values from
    the artifact's constant outputs); Poisson inputs draw spikes as SNNSession does (seed 0)."""
    head = snn.outputs[0]
    activation = snn.metadata.get("output_activations", {}).get(head)
    if form.startswith("unrolled"):  # the running means [T, N, ...]; the trailing activation after them
        per_step = run(dict(x))[head + ".per_step"]
        if activation and activation["axis"] >= 0:
            activation = {**activation, "axis": activation["axis"] + 1}
        return _softmax(per_step.astype(np.float64), activation).astype(np.float32)
    n = SAMPLES
    shapes = {v.name: [d.dim_value or n for d in v.type.tensor_type.shape.dim] for v in snn.proto.graph.input}
    states = {s.input: np.broadcast_to(s.initial, shapes[s.input]).astype(np.float32) for s in snn.states()}
    rng = np.random.default_rng(0)
    total, decoded = 0.0, []
    for t in range(TIMESTEPS):
        feeds = dict(x)
        for i in snn.inputs:
            if i["encoding"] == "poisson":
                feeds[i["name"]] = (rng.random(x[i["name"]].shape) < x[i["name"]]).astype(np.float32)
        outputs = run({**feeds, **states})
        states = {s.input: outputs[s.output] for s in snn.states()}
        total = total + outputs[head].astype(np.float64)
        decoded.append(_softmax(total / (t + 1), activation))
    return np.stack(decoded).astype(np.float32)


# --- the consumers ------------------------------------------------------------------------------
def _names(model: onnx.ModelProto) -> list[str]:
    return [o.name for o in model.graph.output]


def onnxruntime(model: onnx.ModelProto, path: Path) -> Runner:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = _names(model)
    return lambda feeds: dict(zip(names, session.run(names, feeds)))


def onnx_reference(model: onnx.ModelProto, path: Path) -> Runner:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model)
    names = _names(model)
    return lambda feeds: dict(zip(names, evaluator.run(names, feeds)))


def openvino(model: onnx.ModelProto, path: Path) -> Runner:
    import openvino as ov

    # f32 throughout: on CPUs with bf16 units OpenVINO computes in bf16 by default, which moves
    # membranes across thresholds
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = _names(model)

    def run(feeds):
        result = compiled(feeds)
        return {name: np.asarray(result[compiled.output(name)]) for name in names}

    return run


def tract(model: onnx.ModelProto, path: Path) -> Runner:
    import tract as tr

    loaded = tr.onnx().load(str(path)).into_model()
    inputs = [loaded.input_name(i) for i in range(loaded.input_count())]
    runnable = loaded.into_runnable()
    names = _names(model)  # tract names its outputs after their nodes: match them by position

    def run(feeds):
        return {name: value.to_numpy() for name, value in zip(names, runnable.run([feeds[i] for i in inputs]))}

    return run


def onnx2torch(model: onnx.ModelProto, path: Path) -> Runner:
    import torch
    from onnx2torch import convert

    module = convert(model).eval()
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    names = _names(model)

    def run(feeds):
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(feeds[i])) for i in inputs])
        out = out if isinstance(out, (list, tuple)) else [out]
        return {name: value.numpy() for name, value in zip(names, out)}

    return run


def _simplified(simplify: Callable[[onnx.ModelProto], onnx.ModelProto]):
    """A simplifier, then onnx2snn: the step forms run by SNNSession, the unrolled by onnxruntime."""

    def consumer(model: onnx.ModelProto, path: Path):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            simple = simplify(model)
        if any(p.key == "onnx2snn" for p in simple.metadata_props):
            return onnx2snn.load(simple)
        return onnxruntime(simple, path)

    return consumer


def _onnxsim(model):
    import onnxsim

    simple, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's check failed")
    return simple


def _onnxslim(model):
    import onnxslim

    return onnxslim.slim(model)


CONSUMERS: dict[str, Callable] = {
    "onnxruntime": onnxruntime,
    "onnx.reference": onnx_reference,
    "OpenVINO": openvino,
    "tract": tract,
    "onnxsim, then onnx2snn": _simplified(_onnxsim),
    "onnxslim, then onnx2snn": _simplified(_onnxslim),
    "onnx2torch": onnx2torch,
}
MODULES = {"OpenVINO": "openvino", "tract": "tract", "onnx2torch": "onnx2torch"}
MODULES.update({"onnxsim, then onnx2snn": "onnxsim", "onnxslim, then onnx2snn": "onnxslim"})


def importable(consumer: str) -> str | None:
    """None where the consumer's module imports here, else why not (one line)."""
    module = MODULES.get(consumer)
    if module is None:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            __import__(module)
    except Exception as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:100]}" if str(e) else type(e).__name__
    return None


def reference(snn: onnx2snn.SNNModel, x: dict[str, np.ndarray]) -> np.ndarray:
    """onnx2snn's own session on onnxruntime (step form): what every cell is compared with."""
    if id(snn) not in _REFERENCES:
        feeds = x if len(x) > 1 else next(iter(x.values()))
        _REFERENCES[id(snn)] = onnx2snn.SNNSession(snn, form="step", seed=0).run(feeds, TIMESTEPS, per_step=True)
    return _REFERENCES[id(snn)]


def check(consumer: str, snn: onnx2snn.SNNModel, x: dict[str, np.ndarray], form: str, folder: Path) -> dict:
    """One cell: {"status": "equal" | "differs" | "fails" | "n/a", "error", "detail"}."""
    model = form_of(snn, form)
    if model is None:
        return {"status": "n/a", "detail": "no unrolled form for Poisson input"}
    path = folder / f"{form}.onnx"
    onnx2snn.save_onnx(model, path)
    why = importable(consumer)
    if why:
        return {"status": "fails", "detail": f"does not import: {why}"}
    try:
        runner = CONSUMERS[consumer](model, path)
        if isinstance(runner, onnx2snn.SNNModel):  # a simplified artifact, run by onnx2snn
            feeds = x if len(x) > 1 else next(iter(x.values()))
            got = onnx2snn.SNNSession(runner, form="step", seed=0).run(feeds, TIMESTEPS, per_step=True)
        else:
            got = drive(snn, form, runner, x)
    except Exception as e:
        message = f"{type(e).__name__}: {' '.join(str(e).split())}"
        return {"status": "fails", "detail": message[:300], "reason": reason({"status": "fails", "detail": message})}
    want = reference(snn, x)
    error = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
    return {"status": "equal" if error <= TOLERANCE else "differs", "error": error}


def python_matrix(consumers=None) -> dict:
    """{artifact: {form: {consumer: cell}}} for the Python consumers."""
    made = artifacts()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (snn, x) in made.items():
            out[name] = {}
            for form in FORMS:
                out[name][form] = {}
                folder = Path(tmp) / f"{len(out)}_{form}"
                folder.mkdir()
                for consumer in consumers or CONSUMERS:
                    out[name][form][consumer] = check(consumer, snn, x, form, folder)
    return out


# --- JavaScript: onnxruntime-node, onnxruntime-web in Node and in headless Chromium ----------------
JS_PACKAGES = ["onnxruntime-node@1.30.0", "onnxruntime-web@1.30.0"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JS_DRIVER = r"""
// Drive each case as compat.py's drive() does: step forms T runs with the states fed back,
// the unrolled form in one run; write the decoded output after every step.
async function driveAll(ort, cases, load) {
  const results = {};
  for (const c of cases) {
    try {
      const session = await ort.InferenceSession.create(await load(c.file));
      const tensor = (a) => new ort.Tensor("float32", Float32Array.from(a.data), a.shape);
      const softmax = (mean) => {  // over the last axis, rows of head_shape's last size
        const k = c.head_shape[c.head_shape.length - 1];
        for (let r = 0; r < mean.length / k; r++) {
          const row = mean.slice(r * k, r * k + k), m = Math.max(...row);
          const e = row.map((v) => Math.exp(v - m)), z = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j < k; j++) mean[r * k + j] = e[j] / z;
        }
        return mean;
      };
      if (c.form.startsWith("unrolled")) {
        const feeds = {};
        for (const [k, v] of Object.entries(c.inputs)) feeds[k] = tensor(v);
        const out = await session.run(feeds);
        const means = Array.from(out[c.head + ".per_step"].data);
        results[c.key] = {data: c.softmax ? softmax(means) : means};
        continue;
      }
      let states = {};
      for (const s of c.states) states[s.input] = tensor(s.initial);
      let total = null;
      const decoded = [];
      for (let t = 0; t < c.timesteps; t++) {
        const feeds = {};
        for (const [k, v] of Object.entries(c.inputs)) feeds[k] = tensor(c.spikes[k] ? c.spikes[k][t] : v);
        for (const [k, v] of Object.entries(states)) feeds[k] = v;
        const out = await session.run(feeds);
        const next = {};
        for (const s of c.states) next[s.input] = out[s.output];
        states = next;
        const y = out[c.head].data;
        total = total ? total.map((v, i) => v + y[i]) : Array.from(y);
        const mean = total.map((v) => v / (t + 1));
        decoded.push(...(c.softmax ? softmax(mean) : mean));
      }
      results[c.key] = {data: decoded};
    } catch (e) {
      results[c.key] = {error: String(e && e.message ? e.message : e).split("\n")[0].slice(0, 200)};
    }
  }
  return results;
}
"""


def js_cases(made: dict, folder: Path) -> list[dict]:
    """The cases, as JSON the JavaScript driver reads, with their files written into ``folder``."""
    cases = []
    for a, (name, (snn, x)) in enumerate(made.items()):
        for form in FORMS:
            model = form_of(snn, form)
            if model is None:
                continue
            file = f"a{a}_{form}.onnx"
            onnx2snn.save_onnx(model, folder / file)
            states = []
            shapes = {
                v.name: [d.dim_value or SAMPLES for d in v.type.tensor_type.shape.dim] for v in snn.proto.graph.input
            }
            for s in snn.states():
                value = np.broadcast_to(s.initial, shapes[s.input]).astype(np.float32)
                states.append({"input": s.input, "output": s.output, "initial": _json_array(value)})
            rng = np.random.default_rng(0)
            spikes: dict[str, list] = {i["name"]: [] for i in snn.inputs if i["encoding"] == "poisson"}
            for _ in range(TIMESTEPS):
                for k in spikes:
                    spikes[k].append(_json_array((rng.random(x[k].shape) < x[k]).astype(np.float32)))
            head = snn.outputs[0]
            activation = snn.metadata.get("output_activations", {}).get(head)
            cases.append(
                {
                    "key": f"{name}|{form}",
                    "file": file,
                    "form": form,
                    "timesteps": TIMESTEPS,
                    "inputs": {k: _json_array(v) for k, v in x.items()},
                    "spikes": {k: list(v) for k, v in spikes.items()} if form in ("step", "inlined") else {},
                    "states": states if form in ("step", "inlined") else [],
                    "head": head,
                    "head_shape": [SAMPLES] + list(reference(snn, x).shape[2:]),
                    "softmax": bool(activation),
                }
            )
    return cases


def _json_array(a: np.ndarray) -> dict:
    return {"data": [float(v) for v in np.asarray(a, np.float32).ravel()], "shape": list(a.shape)}


def _install_js(folder: Path) -> None:
    import subprocess

    subprocess.run(["npm", "init", "-y"], cwd=folder, check=True, capture_output=True)
    # --ignore-scripts: onnxruntime-node's install script fetches optional CUDA binaries from outside
    # the npm registry; its CPU binaries ship inside the package
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", *JS_PACKAGES],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def _node(folder: Path, package: str) -> dict:
    import subprocess

    script = folder / f"run_{package}.js"
    script.write_text(
        JS_DRIVER
        + f"""
const ort = require("{package}");
const fs = require("fs");
const cases = JSON.parse(fs.readFileSync("cases.json"));
driveAll(ort, cases, async (f) => new Uint8Array(fs.readFileSync(f))).then((r) => {{
  fs.writeFileSync("out_{package}.json", JSON.stringify(r));
  process.exit(0);
}});
"""
    )
    subprocess.run(["node", script.name], cwd=folder, check=True, capture_output=True, timeout=300)
    return json.loads((folder / f"out_{package}.json").read_text())


def _chromium(folder: Path) -> dict:
    """onnxruntime-web (wasm, one thread) in headless Chromium: a page and the files served by a
    server bound to 127.0.0.1, which also receives the results."""
    import http.server
    import shutil
    import subprocess
    import threading

    dist = folder / "node_modules" / "onnxruntime-web" / "dist"
    (folder / "index.html").write_text(
        """<!doctype html><script src="ort.min.js"></script><script>"""
        + JS_DRIVER
        + """
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = "/";
fetch("cases.json").then((r) => r.json()).then((cases) =>
  driveAll(ort, cases, async (f) => new Uint8Array(await (await fetch(f)).arrayBuffer()))
).then((r) => fetch("/results", {method: "POST", body: JSON.stringify(r)}));
</script>"""
    )
    for f in dist.iterdir():
        if f.name.startswith("ort") and f.suffix in (".js", ".mjs", ".wasm"):
            shutil.copy(f, folder / f.name)
    received: dict = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_POST(self):
            received.update(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("no chromium (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="onnx2snn-chromium-")
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    process = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while not received and time.time() < deadline:
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if not received:
        raise RuntimeError("the page sent no results within 300 s")
    return received


def js_matrix(made: dict) -> dict:
    """{artifact: {form: {consumer: cell}}} for onnxruntime-node, onnxruntime-web (Node, Chromium)."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = js_cases(made, folder)
        (folder / "cases.json").write_text(json.dumps(cases))
        _install_js(folder)
        runs = {}
        for consumer, go in (
            ("onnxruntime-node", lambda: _node(folder, "onnxruntime-node")),
            ("onnxruntime-web (wasm, Node)", lambda: _node(folder, "onnxruntime-web")),
            ("onnxruntime-web (wasm, headless Chromium)", lambda: _chromium(folder)),
        ):
            try:
                runs[consumer] = go()
            except Exception as e:
                runs[consumer] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
        for name, (snn, x) in made.items():
            want = reference(snn, x)
            out[name] = {}
            for form in FORMS:
                out[name][form] = {}
                for consumer, results in runs.items():
                    cell = results.get(f"{name}|{form}")
                    if form_of(snn, form) is None:
                        out[name][form][consumer] = {"status": "n/a", "detail": "no unrolled form for Poisson input"}
                    elif cell is None or "error" in cell:
                        why = (cell or results).get("error", "no result")
                        out[name][form][consumer] = {"status": "fails", "detail": why}
                    else:
                        got = np.asarray(cell["data"], np.float32).reshape(want.shape)
                        error = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
                        status = "equal" if error <= TOLERANCE else "differs"
                        out[name][form][consumer] = {"status": status, "error": error}
    return out


# --- the table --------------------------------------------------------------------------------
MARK = {"equal": "equal", "differs": "**differs**", "fails": "fails", "n/a": "n/a"}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    packages = (
        "onnxruntime-gpu",
        "onnxruntime",
        "onnx",
        "openvino",
        "tract",
        "onnxsim",
        "onnxslim",
        "onnx2torch",
        "torch",
    )
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def reason(cell: dict) -> str:
    """A failure in a few words for the table (the JSON keeps the whole message)."""
    if cell.get("reason"):
        return cell["reason"]
    detail = cell.get("detail", "")
    if cell["status"] == "differs":
        return f"max error {cell['error']:.2g}"
    if any(k in detail for k in ("onnx2snn.IF", "Unimplemented(IF)", "operation_type='IF'")):
        return "does not expand model-local functions (`IF`)"
    if "operation_type='Scan'" in detail:
        return "no converter for `Scan`"
    if detail.startswith("does not import"):
        return "does not import (see below)"
    return detail[:80]


def markdown(matrix: dict, notes: dict[str, str]) -> str:
    """One row per consumer, one column per form: how many artifacts give equal outputs."""
    artifacts_ = list(matrix)
    consumers = list(next(iter(next(iter(matrix.values())).values())))
    lines = [
        f"Artifacts: {', '.join(artifacts_)}; T = {TIMESTEPS}, {SAMPLES} samples; *equal*: the decoded output after "
        f"every step within {TOLERANCE:g} (relative) of onnxruntime's.",
        "",
        "| consumer | " + " | ".join(HEADERS[f] for f in FORMS) + " |",
        "|---|" + "---|" * len(FORMS),
    ]
    for consumer in consumers:
        cells = []
        for form in FORMS:
            statuses = [matrix[a][form][consumer]["status"] for a in artifacts_]
            applicable = [s for s in statuses if s != "n/a"]
            equal = sum(s == "equal" for s in applicable)
            if equal == len(applicable):
                cells.append(f"equal ({equal}/{len(applicable)})")
            else:
                cells_ = [matrix[a][form][consumer] for a in artifacts_]
                reasons = sorted({reason(c) for c in cells_ if c["status"] not in ("n/a", "equal")})
                worst = "fails" if "fails" in statuses else "differs"
                cells.append(f"{MARK[worst]} ({equal}/{len(applicable)} equal): {'; '.join(reasons)}")
        lines.append(f"| {consumer} | " + " | ".join(cells) + " |")
    if notes:
        lines += [""] + [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


ONNX2TORCH_NOTE = (
    "onnx2torch 1.5 imports torchvision (for its NMS and RoiAlign converters), and the torchvision made for "
    "torch 2.13.0 (0.28.0) is a CUDA build that does not load beside torch's CPU build; its column comes from "
    "a venv of its own with the CUDA builds torch 2.14.1 and torchvision 0.29.1 (`--onnx2torch-python`), "
    "which run on CPU"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--js", action="store_true", help="also onnxruntime-node and onnxruntime-web (npm, Chromium)")
    parser.add_argument(
        "--onnx2torch-python",
        metavar="PYTHON",
        help="a Python whose environment imports onnx2torch (and onnx2snn): its column is measured there",
    )
    parser.add_argument("--consumers", help="only these Python consumers, comma-separated")
    parser.add_argument("--json-out", metavar="PATH", help="write the matrix there and nothing else")
    args = parser.parse_args()
    consumers = args.consumers.split(",") if args.consumers else None
    if args.onnx2torch_python:
        consumers = [c for c in CONSUMERS if c != "onnx2torch"]
    matrix = python_matrix(consumers)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"matrix": matrix, "versions": versions()}))
        return
    notes = {}
    if args.onnx2torch_python:
        import subprocess

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "onnx2torch.json"
            command = [args.onnx2torch_python, __file__, "--consumers", "onnx2torch", "--json-out", str(out)]
            subprocess.run(command, check=True, capture_output=True)
            other = json.loads(out.read_text())
        for name in matrix:
            for form in FORMS:
                matrix[name][form]["onnx2torch"] = other["matrix"][name][form]["onnx2torch"]
        versions_there = ", ".join(f"{k} {v}" for k, v in other["versions"].items() if k in ("onnx2torch", "torch"))
        notes["onnx2torch"] = f"{ONNX2TORCH_NOTE} ({versions_there})"
    elif importable("onnx2torch"):
        notes["onnx2torch"] = f"does not import here ({importable('onnx2torch')}); {ONNX2TORCH_NOTE}"
    if args.js:
        js = js_matrix(artifacts())
        for name in matrix:
            for form in FORMS:
                matrix[name][form].update(js[name][form])
    notes = {"versions": ", ".join(f"{k} {v}" for k, v in versions().items()), **notes}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compat.json").write_text(json.dumps({"matrix": matrix, "notes": notes}, indent=1) + "\n")
    (RESULTS / "compat.md").write_text(markdown(matrix, notes))
    update_readme(markdown(matrix, notes))
    print(markdown(matrix, notes))


README_START = "<!-- compatibility matrix: benchmarks/results/compat.md -->"
README_END = "<!-- end of compatibility matrix -->"


def update_readme(table: str) -> None:
    """Put the matrix between the README's compatibility-matrix markers."""
    readme = Path(__file__).parent.parent / "README.md"
    text = readme.read_text()
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    readme.write_text(text[:start] + "\n" + table + text[end:])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
