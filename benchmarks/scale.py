"""Conversion and simulation at real size: ResNet-18, ResNet-50, MobileNetV2 and VGG-16 at
3x224x224, and a wide MLP on the same images (benchmarks/realsize.py: random weights, BatchNorm
statistics from the data, the head re-centred), each measured in processes of its own.

    python benchmarks/scale.py                      # every model and measurement
    python benchmarks/scale.py --models resnet18 --only convert
    python benchmarks/scale.py --merge ...          # add to the committed results

Per model, into benchmarks/results/scale.{md,json}:
- conversion with 256 calibration images: wall time and peak resident memory of the whole
  process, for the default method and each other one;
- simulation (default artifact): step-form images/s and its ratio to the dense limit at T = 32,
  the unrolled form within its memory budget;
- agreement with the ANN at T = 256 on 64 test images (top-1, and the mean absolute logit error
  relative to the logits' spread), of the default artifact and (``--agreement default,max``) of
  the `max` one, each beside its limit as T grows: the ANN clipped at the artifact's thresholds.
The machine is shared and noisy: times are one run each, and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WORK = Path(os.environ.get("ONNX2SNN_SCALE_DIR", "/tmp/onnx2snn-scale"))
MODELS = ("resnet18", "resnet50", "mobilenet_v2", "vgg16", "mlp")
METHODS = ("default", "max", "percentile:99.99", "mmse", "spike-norm", "spike-norm:seed")
CALIBRATION = 256
AGREEMENT = (256, 64)  # T, test images
SPEED = (32, 8)  # T, batch


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _data(split: str, n: int) -> np.ndarray:
    sys.path.insert(0, str(HERE))
    import realsize

    cache = WORK / f"{split}_{n}.npy"
    if not cache.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        np.save(cache, realsize.images(split, n))
    return np.load(cache)


def _model(name: str) -> Path:
    sys.path.insert(0, str(HERE))
    import realsize

    return realsize.build(name, WORK / "models", _data("train", CALIBRATION))


def child_convert(name: str, method: str, images: str = str(CALIBRATION)) -> dict:
    import onnx2snn

    x = _data("train", int(images))
    _model(name)  # built (and the images made) before the peak is reset: the peak is the conversion's
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on (Linux)
    options = {} if method == "default" else {"method": method}
    if method.startswith("spike-norm") or method in ("max", "percentile:99.99"):
        options["corrections"] = ()
    start = time.perf_counter()
    snn = onnx2snn.convert(_model(name), x, **options)
    seconds = time.perf_counter() - start
    if method in ("default", "max") and int(images) == CALIBRATION:
        snn.save(WORK / f"{name}{'' if method == 'default' else '_max'}_snn.onnx")
    return {"seconds": seconds, "peak_mb": _hwm_mb(), "layers": len(snn.layers), "data_mb": x.nbytes / 2**20}


def child_speed(name: str) -> dict:
    import onnx2snn
    from onnx2snn.tools.timing import time_against_dense

    steps, batch = SPEED
    snn = onnx2snn.load(WORK / f"{name}_snn.onnx")
    x = _data("test", 64)[:batch]
    out = {}
    for form in ("step", "unrolled"):
        try:
            session = onnx2snn.SNNSession(snn, form=form, batch_size=batch)
            result = time_against_dense(session, x, steps, 1, "cpu")
        except onnx2snn.ConfigError as e:  # the unrolled form past its memory budget: refused, as designed
            out[form] = {"refused": str(e)}
            continue
        out[form] = {**result, "neurons": session.neurons, "peak_mb": _hwm_mb()}
    return out


def _clipped(snn, ann):
    """``ann`` (the artifact's own ANN, to_ann) with each neuron layer's activation clipped at its
    threshold: the artifact's limit as T grows (a correction's charge fades as 1/T)."""
    import copy

    from onnx import helper, numpy_helper

    model = copy.deepcopy(ann)
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if node.name in snn.thresholds:
            out = node.output[0]
            node.output[0] = f"{out}.unclipped"
            theta = np.asarray(snn.thresholds[node.name], np.float32)
            model.graph.initializer.append(numpy_helper.from_array(theta, f"{out}.threshold"))
            clip = helper.make_node("Min", [f"{out}.unclipped", f"{out}.threshold"], [out], name=f"{node.name}.clip")
            nodes.append(clip)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def child_agreement(name: str, method: str = "default") -> dict:
    import onnx2snn

    steps, count = AGREEMENT
    snn = onnx2snn.load(WORK / f"{name}{'' if method == 'default' else '_' + method}_snn.onnx")
    x = _data("test", count)
    ann = onnx2snn.run_ann(onnx2snn.load_onnx(_model(name)), x, 16)
    limit = onnx2snn.run_ann(_clipped(snn, onnx2snn.to_ann(snn)), x, 16)
    start = time.perf_counter()
    out = onnx2snn.SNNSession(snn, batch_size=16).run(x, steps)
    spread = float(np.std(ann))
    return {
        "artifact": method,
        "timesteps": steps,
        "samples": count,
        "agreement": float((out.argmax(1) == ann.argmax(1)).mean()),
        "relative_error": float(np.abs(out - ann).mean() / spread),
        "limit_agreement": float((limit.argmax(1) == ann.argmax(1)).mean()),
        "limit_relative_error": float(np.abs(limit - ann).mean() / spread),
        "seconds": time.perf_counter() - start,
    }


CHILDREN = {"convert": child_convert, "images": child_convert, "speed": child_speed, "agreement": child_agreement}
IMAGES = (64, 256, 1024)  # calibration images, for the memory against the number of images


def run_child(kind: str, *args: str) -> dict:
    """One measurement in a fresh process (its peak memory is its own)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _time_and_peak(c: dict | None) -> str:
    """A conversion's cell: 'seconds / peak MB', its error, or 'not measured'."""
    return "not measured" if c is None else c.get("error", f"{c['seconds']:.0f} / {c['peak_mb']:,.0f}")


def table(results: dict) -> str:
    lines = [
        "# Real-size models (generated by benchmarks/scale.py)",
        "",
        f"3x224x224 inputs, random weights (benchmarks/realsize.py), {CALIBRATION} calibration images; CPU, 2 cores, "
        "a shared machine (one run each: times are indicative). Each conversion runs in a process of its own with "
        "both cores (onnxruntime's passes and the compiled kernel's calibration loops use them). A conversion's time "
        "depends much on what runs beside it (the ANN's pass is bound by memory bandwidth: ResNet-50's `max` took "
        "13-17 s alone, 32 s with another conversion on the other core): `default` and `max` of a model are "
        "measured in the same conditions, one after the other.",
        "",
        "## Conversion: wall time (s) / peak memory (MB)",
        "",
        "| model | " + " | ".join(f"`{m}`" for m in METHODS) + " | `default` / `max` time |",
        "|---|" + "---|" * (len(METHODS) + 1),
    ]
    notes: list[str] = []
    for name, r in results.items():
        cells = []
        for m in METHODS:
            c = r.get("convert", {}).get(m)
            cells.append(_time_and_peak(c))
            if c and c.get("note"):
                notes += [c["note"]] if c["note"] not in notes else []
                cells[-1] += f" ({notes.index(c['note']) + 1})"
        default, plain = (r.get("convert", {}).get(m) for m in ("default", "max"))
        cells.append(f"{default['seconds'] / plain['seconds']:.2f}x" if default and plain else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [""] + [f"({i}) {note}" for i, note in enumerate(notes, 1)] if notes else []
    lines += [
        "",
        f"## Simulation (default artifact), T = {SPEED[0]}, batch {SPEED[1]}",
        "",
        "| model | step form img/s | vs dense limit | unrolled img/s | unrolled peak MB |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s = r.get("speed", {})
        step, unrolled = s.get("step", {}), s.get("unrolled", {})

        def cell(d: dict, key: str, form: str) -> str:  # blank where not measured
            return form.format(d[key]) if key in d else "over its memory budget" if "refused" in d else "not measured"

        lines.append(
            f"| {name} | {cell(step, 'images_per_s', '{:.1f}')} | {cell(step, 'vs_dense_limit', '{:.2f}x')} "
            f"| {cell(unrolled, 'images_per_s', '{:.1f}')} | {cell(unrolled, 'peak_mb', '{:,.0f}')} |"
        )
    steps, count = AGREEMENT
    lines += [
        "",
        f"## Agreement with the ANN at T = {steps}, {count} test images",
        "",
        "Top-1 agreement and the mean absolute logit error relative to the ANN logits' spread; beside them the",
        "same for the artifact's limit as T grows (the ANN with each layer clipped at its thresholds).",
        "The default artifact is tuned for T = 16 (MMSE thresholds clip); `max` clips only above the",
        "calibration maximum.",
        "",
        "| model | artifact | agreement | rel. error | limit: agreement | limit: rel. error |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for key in sorted(k for k in r if k.startswith("agreement")):
            a = r[key]
            if "error" in a:
                lines.append(f"| {name} | {key.partition('_')[2] or 'default'} | {a['error']} | | | |")
                continue
            limit = [a.get("limit_agreement"), a.get("limit_relative_error")]
            lines.append(
                f"| {name} | {a.get('artifact', 'default')} | {a['agreement']:.3f} | {a['relative_error']:.3f} | "
                + " | ".join("not measured" if v is None else f"{v:.3f}" for v in limit)
                + " |"
            )
    sweeps = {name: r["images"] for name, r in results.items() if r.get("images")}
    if sweeps:
        lines += [
            "",
            "## Conversion against the number of calibration images: wall time (s) / peak memory (MB)",
            "",
            "The peak includes the calibration images themselves (3x224x224 float32: 0.6 MB an image).",
            "",
            "| model | method | " + " | ".join(f"{n} images" for n in IMAGES) + " |",
            "|---|---|" + "---|" * len(IMAGES),
        ]
        for name, sweep in sweeps.items():
            for method in dict.fromkeys(key.split("@")[0] for key in sweep):
                cells = [_time_and_peak(sweep.get(f"{method}@{n}")) for n in IMAGES]
                lines.append(f"| {name} | `{method}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--only", choices=list(CHILDREN), action="append")
    parser.add_argument(
        "--agreement", default="default", help="artifacts to score at T = 256: default and/or max (converted first)"
    )
    parser.add_argument("--merge", action="store_true", help="add to the committed results instead of replacing them")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](*rest)))
        return
    path = RESULTS / "scale.json"
    kinds = args.only or list(CHILDREN)
    measured: dict[str, dict] = {}  # what this run measured, by model
    for name in args.models.split(","):
        new = measured.setdefault(name, {})
        if "convert" in kinds:
            for method in args.methods.split(","):
                new.setdefault("convert", {})[method] = run_child("convert", name, method)
                print(name, method, new["convert"][method], flush=True)
        if "images" in kinds:
            for method in args.methods.split(","):
                for n in IMAGES:
                    new.setdefault("images", {})[f"{method}@{n}"] = run_child("images", name, method, str(n))
                    print(name, method, n, new["images"][f"{method}@{n}"], flush=True)
        if "speed" in kinds:
            new["speed"] = run_child("speed", name)
            print(name, "speed", new["speed"], flush=True)
        if "agreement" in kinds:
            for artifact in args.agreement.split(","):
                key = "agreement" if artifact == "default" else f"agreement_{artifact}"
                new[key] = run_child("agreement", name, artifact)
                print(name, key, new[key], flush=True)
        # read again just before writing: another run may have merged its models meanwhile
        results = json.loads(path.read_text()) if args.merge and path.exists() else {}
        for model, values in measured.items():
            r = results.setdefault(model, {})
            for key, value in values.items():
                if key in ("convert", "images"):
                    r.setdefault(key, {}).update(value)
                else:
                    r[key] = value
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "scale.md").write_text(table(results))


if __name__ == "__main__":
    main()
