"""The README's accuracy table: each reference ANN converted and evaluated on the full
Fashion-MNIST test set at T = 16, 32, 64, 128, from one run per model and method: convert's
default, the plain ``max`` norm, and the original research script's Spike-Norm variant.

    python benchmarks/accuracy_table.py                    # writes benchmarks/results/accuracy.{md,json}, README
    python benchmarks/accuracy_table.py --limit 500 --models seed_cifar_net   # a slice, printed only

Calibration: 2,000 training images drawn with seed 0. Besides each accuracy the JSON keeps
the number of correct predictions among the first 500 test images (``slice_correct``), which
the test suite recomputes to check the committed table against the code.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import onnx2snn
from onnx2snn import evaluate

HERE = Path(__file__).parent
MODELS = HERE / "models"
RESULTS = HERE / "results"
TIMESTEPS = (16, 32, 64, 128)
METHODS = ("default", "max", "spike-norm:seed")
CALIBRATION_SAMPLES = 2000
SLICE = 500
README_START = "<!-- accuracy table: benchmarks/results/accuracy.md -->"
README_END = "<!-- end of accuracy table -->"
SEED_RESULTS = [  # the original research script's published numbers (its own data sets, T = 16)
    ("MNIST (original script, seed's MNIST net)", "98.14", {16: "97.01"}),
    ("CIFAR10 (original script, seed's CIFAR10 net)", "69.86", {16: "52.22"}),
]


def measure(model: str, method: str, limit: int | None = None) -> dict:
    """Convert one reference model with one method and evaluate it (the whole test set,
    or its first ``limit`` images)."""
    path = MODELS / f"fashion_mnist_{model}.onnx"
    calibration = onnx2snn.load_data("fashion-mnist:train")
    options = {} if method == "default" else {"method": method}
    snn = onnx2snn.convert(path, calibration, calibration_samples=CALIBRATION_SAMPLES, seed=0, **options)
    test = onnx2snn.load_data("fashion-mnist:test").head(limit)
    report = evaluate(snn, test, list(TIMESTEPS))
    sliced = report if limit == SLICE else evaluate(snn, test.head(SLICE), list(TIMESTEPS))
    return {
        "model": model,
        "method": method,
        "samples": report["samples"],
        "ann": report["ann"]["accuracy"],
        "snn": {str(t): report["snn"][str(t)]["accuracy"] for t in TIMESTEPS},
        "slice_correct": {
            "ann": round(sliced["ann"]["accuracy"] * SLICE),
            **{str(t): round(sliced["snn"][str(t)]["accuracy"] * SLICE) for t in TIMESTEPS},
        },
    }


def configuration(method: str) -> str:
    """What a row's method means with convert's other defaults (per channel, corrections, T)."""
    name = onnx2snn.DEFAULT_METHOD if method == "default" else method
    options = onnx2snn.ConvertOptions.make(name)
    calibration = {
        "method": f"`{name}`",
        "per_channel": options.per_channel and not options.method.per_layer_only,
        "corrections": options.corrections,
    }
    text = onnx2snn.describe_calibration(calibration, options.neurons.timesteps)
    return f"default: {text}" if method == "default" else text


def markdown(rows: list[dict]) -> str:
    head = "| Dataset / model | Method | ANN | " + " | ".join(f"SNN T={t}" for t in TIMESTEPS) + " |"
    lines = [head, "|" + "---|" * (3 + len(TIMESTEPS))]
    for r in rows:
        method = configuration(r["method"])
        cells = [f"Fashion-MNIST `{r['model']}`", method, f"{100 * r['ann']:.2f}"]
        cells += [f"{100 * r['snn'][str(t)]:.2f}" for t in TIMESTEPS]
        lines.append("| " + " | ".join(cells) + " |")
    for name, ann, snn in SEED_RESULTS:
        cells = [name, "Spike-Norm", ann] + [snn.get(t, "") for t in TIMESTEPS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["seed_mnist_net", "seed_cifar_net", "cnn_bn", "resnet_small"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--limit", type=int, default=None, help="first N test images only (prints, writes nothing)")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        for method in args.methods:
            start = time.time()
            rows.append(measure(model, method, args.limit))
            print(f"{model} {method}: {time.time() - start:.0f}s", flush=True)
    table = markdown(rows)
    print(table)
    if args.limit is None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "accuracy.md").write_text(table)
        (RESULTS / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
        update_readme(table)


def update_readme(table: str) -> None:
    """Put the table between the README's accuracy-table markers."""
    readme = HERE.parent / "README.md"
    text = readme.read_text()
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    readme.write_text(text[:start] + "\n" + table + text[end:])


if __name__ == "__main__":
    main()
