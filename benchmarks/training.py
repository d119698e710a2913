"""Training benchmarks on the full Fashion-MNIST test set, one row at a time (resumable: a row
already in the results file is not run again).

    python benchmarks/training.py quantization    # bits x per layer / per channel, ANN and SNN T=16, sizes
    python benchmarks/training.py spiking         # spiking fine-tuning at T = 1, 2, 4, 8, before and after
    python benchmarks/training.py table           # benchmarks/results/training.md and the README's table
    python benchmarks/training.py quantization --models cnn_bn --bits 4 --granularity channel   # a subset

Quantization (the original research script's pipeline): the reference ANN's weights quantized to
B bits (per layer or per output channel) and fine-tuned 5 epochs on the 60,000 training images
with the original's defaults (SGD lr 0.005, momentum 0.9, weight decay 5e-4, batch 64, x0.1 at
50% and 75%), written with integer weights; then converted with convert's defaults (2,000
calibration images, seed 0) and run at T = 16. Sizes: the quantized ANN and its SNN artifact
against the float ones.

Spiking fine-tuning: each reference ANN converted with convert's defaults tuned for the T it will
run at, then fine-tuned through those T steps (surrogate gradient) with finetune's SNN defaults;
accuracy at that T before and after, beside the default artifact (tuned for T = 16) at that T.

The machine is shared (2 CPU cores, other work running beside): epoch times are as measured
there. Rows go to benchmarks/results/training.json as they finish; models to benchmarks/work/
(not committed)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx

import onnx2snn

HERE = Path(__file__).parent
MODELS = HERE / "models"
RESULTS = HERE / "results"
WORK = HERE / "work"
RESULTS_FILE = RESULTS / "training.json"
CALIBRATION_SAMPLES = 2000
DEFAULT_TIMESTEPS = [1, 2, 4, 8, 16]  # where the default artifact is scored
README_START = "<!-- training table: benchmarks/results/training.md -->"
README_END = "<!-- end of training table -->"
# the original research script's published figures (its own data sets; it quantizes to 4 bits per
# layer by default and does not say otherwise for these): ANN after quantization -> SNN at T = 16
ORIGINAL = [("MNIST", "98.14", "97.01"), ("CIFAR10", "69.86", "52.22")]
# SpikingJelly's best post-training figures on these models at low T (benchmarks/results/calibration.md,
# its channel-wise 99.9% mode, the first 2,000 test images)
SPIKINGJELLY_BEST = {"cnn_bn": {4: 85.60, 8: 91.65}, "resnet_small": {4: 64.05, 8: 84.00}}


def load_results() -> dict:
    return json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {"rows": {}}


def save_row(key: str, row: dict) -> None:
    results = load_results()
    results["rows"][key] = row
    results["machine"] = f"{os.cpu_count()} CPU cores, shared with other work; torch {torch_version()}"
    RESULTS.mkdir(exist_ok=True)
    onnx2snn.save_json(results, RESULTS_FILE)


def torch_version() -> str:
    import torch

    return torch.__version__


def data():
    return onnx2snn.load_data("fashion-mnist:train"), onnx2snn.load_data("fashion-mnist:test")


def accuracy(model: onnx.ModelProto, test) -> float:
    return float((onnx2snn.run_ann(model, test.x).argmax(-1) == test.y).mean())


def convert(model, train, timesteps: int = onnx2snn.DEFAULT_TIMESTEPS) -> onnx2snn.SNNModel:
    return onnx2snn.convert(model, train, calibration_samples=CALIBRATION_SAMPLES, seed=0, timesteps=timesteps)


def snn_accuracy(snn, test, timesteps: list[int]) -> dict[str, float]:
    report = onnx2snn.evaluate(snn, test, timesteps)
    return {t: report["snn"][t]["accuracy"] for t in report["snn"]}


def size_of(model, name: str) -> int:
    path = WORK / name
    (model.save(path) if hasattr(model, "save") else onnx2snn.save_onnx(model, path))
    return path.stat().st_size


def float_row(name: str, train, test, fresh: bool = False) -> dict:
    key = f"float/{name}"
    results = load_results()["rows"]
    if key in results and not fresh:
        return results[key]
    ann = onnx.load(str(MODELS / f"fashion_mnist_{name}.onnx"))
    snn = convert(ann, train)
    row = {
        "model": name,
        "ann": accuracy(ann, test),
        "snn": snn_accuracy(snn, test, [16]),
        "ann_bytes": (MODELS / f"fashion_mnist_{name}.onnx").stat().st_size,
        "snn_bytes": size_of(snn, f"{name}_snn.onnx"),
    }
    save_row(key, row)
    return row


def quantization(
    models: list[str],
    bits: list[int],
    granularity: list[str],
    samples: int | None = None,
    lr: float | None = None,
    fresh: bool = False,
) -> None:
    train, test = data()
    bases = {name: float_row(name, train, test, fresh) for name in models}
    for b in bits:
        for g in granularity:
            for name in models:
                base = bases[name]
                key = f"quantization/{name}/{b}/{g}" + (f"/s{samples}" if samples else "")
                key += f"/lr{lr:g}" if lr else ""
                if key in load_results()["rows"] and not fresh:
                    continue
                began = time.time()
                path = MODELS / f"fashion_mnist_{name}.onnx"
                options = {"lr": lr} if lr else {}
                result = onnx2snn.finetune(
                    path, train, weight_bits=b, channel_wise=g == "channel", samples=samples, **options
                )
                ann = result.model
                snn = convert(ann, train)
                row = {
                    "model": name,
                    "bits": b,
                    "granularity": g,
                    "samples": result.record["samples"],
                    "float_ann": base["ann"],
                    "ann": accuracy(ann, test),
                    "snn": snn_accuracy(snn, test, [16]),
                    "ann_bytes": size_of(ann, f"{name}_q{b}_{g}.onnx"),
                    "snn_bytes": size_of(snn, f"{name}_q{b}_{g}_snn.onnx"),
                    "float_ann_bytes": base["ann_bytes"],
                    "float_snn_bytes": base["snn_bytes"],
                    "lr": result.record.get("lr"),
                    "storage": sorted({onnx.TensorProto.DataType.Name(t.data_type) for t in ann.graph.initializer}),
                    "epochs": result.log,
                    "seconds": round(time.time() - began),
                }
                save_row(key, row)
                print(
                    f"{key}: ANN {100 * row['ann']:.2f} (float {100 * base['ann']:.2f}), SNN T=16 "
                    f"{100 * row['snn']['16']:.2f}, artifact {row['snn_bytes'] / base['snn_bytes']:.3f}x",
                    flush=True,
                )


def spiking(
    models: list[str],
    timesteps: list[int],
    epochs: int | None,
    bits: int | None,
    samples: int | None = None,
    lr: float | None = None,
) -> None:
    train, test = data()
    bases = {name: float_row(name, train, test) for name in models}
    for t in timesteps:
        for name in models:
            base = bases[name]
            path = MODELS / f"fashion_mnist_{name}.onnx"
            default_key = f"default/{name}"
            if default_key not in load_results()["rows"]:
                default = convert(onnx.load(str(path)), train)
                save_row(default_key, {"model": name, "snn": snn_accuracy(default, test, DEFAULT_TIMESTEPS)})
            key = f"spiking/{name}/{t}" + (f"/q{bits}" if bits else "") + (f"/lr{lr:g}" if bits and lr else "")
            key += f"/s{samples}" if samples else ""
            if key in load_results()["rows"]:
                continue
            began = time.time()
            ann = onnx.load(str(path))
            if bits:
                quantize = {"lr": lr} if lr else {}
                ann = onnx2snn.finetune(path, train, weight_bits=bits, channel_wise=True, **quantize).model
            snn = convert(ann, train, timesteps=t)
            before = snn_accuracy(snn, test, [t])[str(t)]
            options = {"epochs": epochs} if epochs else {}
            result = onnx2snn.finetune(snn, train, timesteps=t, samples=samples, **options)
            result.save(WORK / f"{name}_T{t}{f'_q{bits}' if bits else ''}_finetuned.onnx")
            after = snn_accuracy(result.model, test, [t])[str(t)]
            row = {
                "model": name,
                "timesteps": t,
                "weight_bits": bits,
                "quantization_lr": lr if bits else None,
                "samples": result.record["samples"],
                "ann": base["ann"] if not bits else accuracy(ann, test),
                "float_ann": base["ann"],
                "default_artifact": load_results()["rows"][default_key]["snn"][str(t)],
                "before": before,
                "after": after,
                "epochs": result.log,
                "epoch_seconds": [e["seconds"] for e in result.log],
                "options": {k: v for k, v in result.record.items() if k in ("lr", "momentum", "batch_size", "seed")},
                "seconds": round(time.time() - began),
            }
            save_row(key, row)
            print(
                f"{key}: {100 * before:.2f} -> {100 * after:.2f} (ANN {100 * row['ann']:.2f}), "
                f"epochs {row['epoch_seconds']} s",
                flush=True,
            )


def pct(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _find(rows: dict, key: str) -> dict | None:
    """The row of ``key`` trained on the whole training set, else one on a subset."""
    if key in rows:
        return rows[key]
    subsets = [k for k in rows if k.startswith(key + "/s")]
    return rows[subsets[0]] if subsets else None


def _variants(rows: dict, key: str) -> list[dict]:
    """Every row of ``key``: on the whole training set first, then on subsets or other settings."""
    return [rows[k] for k in sorted(rows, key=lambda k: (k != key, k)) if k == key or k.startswith(key + "/")]


def _training(r: dict) -> str:
    epochs = len(r["epochs"])
    samples = r.get("samples") or 60000
    text = f"{epochs} epoch{'s' * (epochs != 1)}" + ("" if samples == 60000 else f" on {samples:,} samples")
    lr = r.get("lr")
    return text + (f", lr {lr:g}" if lr is not None and r["key"].rsplit("/", 1)[-1].startswith("lr") else "")


def table() -> str:
    rows = {key: {**row, "key": key} for key, row in load_results()["rows"].items()}
    lines = ["### Weight quantization (straight-through fine-tuning, then convert's defaults)", ""]
    lines += [
        "| model | weights | fine-tuning | ANN (vs float) | SNN T=16 | SNN - ANN | ANN file | SNN artifact "
        "| epoch (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("cnn_bn", "resnet_small"):
        base = rows.get(f"float/{name}")
        if not base:
            continue
        lines.append(
            f"| `{name}` | float32 | | {pct(base['ann'])} | {pct(base['snn']['16'])} | "
            f"{100 * (base['snn']['16'] - base['ann']):+.2f} | {base['ann_bytes'] / 1e6:.2f} MB | "
            f"{base['snn_bytes'] / 1e6:.2f} MB | |"
        )
        for bits in (8, 4, 3, 2):
            for g in ("channel", "layer"):
                for r in _variants(rows, f"quantization/{name}/{bits}/{g}"):
                    epoch = np.mean([e["seconds"] for e in r["epochs"]])
                    lines.append(
                        f"| `{name}` | {bits}-bit per {g} | {_training(r)} | {pct(r['ann'])} "
                        f"({100 * (r['ann'] - r['float_ann']):+.2f}) | {pct(r['snn']['16'])} | "
                        f"{100 * (r['snn']['16'] - r['ann']):+.2f} | {r['ann_bytes'] / r['float_ann_bytes']:.3f}x | "
                        f"{r['snn_bytes'] / r['float_snn_bytes']:.3f}x | {epoch:.0f} |"
                    )
    for data_set, ann, snn in ORIGINAL:
        lines.append(
            f"| original script, {data_set} (published) | 4-bit per layer (its default) | 5 epochs | {ann} | {snn} "
            "| | | | |"
        )
    lines += ["", "### Spiking fine-tuning (surrogate gradient through T steps)", ""]
    lines += [
        "| model (ANN) | T | default artifact (tuned for T=16) | converted for T | fine-tuned at T | SNN - ANN | "
        "fine-tuning | SpikingJelly best (2,000 images) | epoch (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("cnn_bn", "resnet_small"):
        for t in (1, 2, 4, 8):
            r = _find(rows, f"spiking/{name}/{t}")
            if not r:
                continue
            sj = SPIKINGJELLY_BEST.get(name, {}).get(t)
            lines.append(
                f"| `{name}` ({pct(r['ann'])}) | {t} | {pct(r['default_artifact'])} | {pct(r['before'])} | "
                f"**{pct(r['after'])}** | {100 * (r['after'] - r['ann']):+.2f} | {_training(r)} | "
                f"{'' if sj is None else f'{sj:.2f}'} | {' / '.join(f'{s:.0f}' for s in r['epoch_seconds'])} |"
            )
    for key, r in sorted(rows.items()):
        if key.startswith("spiking/") and r.get("weight_bits"):
            qlr = f", lr {r['quantization_lr']:g}" if r.get("quantization_lr") else ""
            lines.append(
                f"| `{r['model']}`, {r['weight_bits']}-bit weights{qlr} ({pct(r['ann'])}) | {r['timesteps']} | | "
                f"{pct(r['before'])} | **{pct(r['after'])}** | {100 * (r['after'] - r['ann']):+.2f} | "
                f"{_training(r)} | | {' / '.join(f'{s:.0f}' for s in r['epoch_seconds'])} |"
            )
    machine = load_results().get("machine", "")
    lines += ["", f"Full Fashion-MNIST test set (10,000 images). Machine: {machine}."]
    return "\n".join(lines) + "\n"


def write_table() -> None:
    text = table()
    (RESULTS / "training.md").write_text("# Training benchmarks (generated by benchmarks/training.py)\n\n" + text)
    readme = HERE.parent / "README.md"
    body = readme.read_text()
    if README_START in body:
        start = body.index(README_START) + len(README_START)
        end = body.index(README_END)
        readme.write_text(body[:start] + "\n" + text + body[end:])
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["quantization", "spiking", "table"])
    parser.add_argument("--models", default="cnn_bn,resnet_small")
    parser.add_argument("--bits", default="4,8,3,2")
    parser.add_argument("--granularity", default="channel,layer")
    parser.add_argument("--timesteps", default="4,8,2,1")
    parser.add_argument("--epochs", type=int, default=None, help="spiking: epochs (finetune's SNN default)")
    parser.add_argument("--weight-bits", type=int, default=None, help="spiking: fine-tune 4-bit weights")
    parser.add_argument("--samples", type=int, default=None, help="train on a seeded subset (rows say so)")
    parser.add_argument(
        "--lr", type=float, default=None, help="the quantization's learning rate (spiking: with --weight-bits)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="quantization: measure the rows (and their float row) again"
    )
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    models = args.models.split(",")
    if args.part == "quantization":
        bits = [int(b) for b in args.bits.split(",")]
        quantization(models, bits, args.granularity.split(","), args.samples, args.lr, args.fresh)
    elif args.part == "spiking":
        steps = [int(t) for t in args.timesteps.split(",")]
        spiking(models, steps, args.epochs, args.weight_bits, args.samples, args.lr)
    write_table()


if __name__ == "__main__":
    main()
