"""Single- against multi-spike IF neurons in our own conversions, at low T.

    python benchmarks/multi_spike.py       # writes benchmarks/results/multi_spike.{md,json}

Every reference ANN is converted twice with each threshold configuration below (same 1,000
calibration images), once with IF neurons (at most one spike a step: a current above theta is
clipped to theta) and once with MultiSpikeIF (``spike_mode="multi"``: as many spikes as
thresholds crossed, so nothing is clipped), and evaluated on the first 2,000 Fashion-MNIST test
images at T = 1, 2, 4, 8, 16, 32, 64 (one run of 64 steps each).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import onnx2snn

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODELS = ("seed_mnist_net", "seed_cifar_net", "cnn_bn", "resnet_small")
TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)
CONFIGS = {  # label: convert() options
    "default (mmse per channel + potential, T=16)": {},
    "max per channel, no correction": {"method": "max", "per_channel": True, "corrections": ()},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    calibration = onnx2snn.load_data("fashion-mnist:train").sample(1000, 0)
    test = onnx2snn.load_data("fashion-mnist:test").head(args.samples)
    results: dict = {"samples": len(test), "timesteps": list(TIMESTEPS), "models": {}}
    for name in args.models:
        ann = HERE / "models" / f"fashion_mnist_{name}.onnx"
        for label, options in CONFIGS.items():
            for mode in ("single", "multi"):
                snn = onnx2snn.convert(ann, calibration, spike_mode=mode, **options)
                report = onnx2snn.evaluate(snn, test, TIMESTEPS, form="step")
                row = {t: r["accuracy"] for t, r in report["snn"].items()}
                results["models"].setdefault(name, {"ann": report["ann"]["accuracy"]})[f"{label}, {mode}"] = row
                print(name, label, mode, " ".join(f"{100 * a:.2f}" for a in row.values()), flush=True)
    if not args.no_write:
        onnx2snn.save_json(results, RESULTS / "multi_spike.json")
        (RESULTS / "multi_spike.md").write_text(table(results))


def table(results: dict) -> str:
    steps = results["timesteps"]
    lines = [
        "# Single- vs multi-spike IF neurons (accuracy %, Fashion-MNIST)",
        "",
        f"First {results['samples']} test images, 1,000 calibration images. Regenerate: "
        "`python benchmarks/multi_spike.py`.",
        "",
        "| model (ANN) | thresholds, spikes | " + " | ".join(f"T={t}" for t in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    for name, rows in results["models"].items():
        ann = rows["ann"]
        for label, row in rows.items():
            if label == "ann":
                continue
            cells = " | ".join(f"{100 * row[str(t)]:.2f}" for t in steps)
            lines.append(f"| `{name}` ({100 * ann:.2f}) | {label} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
