"""Calibration quality, side by side with SpikingJelly's converter.

    pip install -r benchmarks/requirements.txt       # the peers, benchmark environment only
    python benchmarks/accuracy.py                    # writes benchmarks/results/calibration.{md,json,png}
    python benchmarks/accuracy.py --models cnn_bn --samples 500 --no-write   # a quicker look
    python benchmarks/accuracy.py --models cnn_bn --samples 10000 --configs "mmse per-channel + potential" \
        --peers "SpikingJelly 99.9%" "SpikingJelly 99.9% channel-wise" --tag _full   # the full test set

For each reference ANN (benchmarks/models, trained by train_reference.py) every onnx2snn
configuration worth reporting and SpikingJelly 2.0's rate-coding converter (its ``max`` and
``99.9%`` modes, and its channel-wise 99.9% with half-threshold start) are calibrated on the
same 1,000 training images and evaluated on the same first 2,000 Fashion-MNIST test images at
T = 4, 8, 16, 32, 64, 128 (one run of 128 steps each; SpikingJelly simulates in PyTorch eager
at about a millisecond per image and step here, which is what limits the sample).
onnx2snn's T-dependent calibrations (mmse, spike-norm, corrections) are tuned for T = 16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

import onnx2snn
from onnx2snn import evaluate, plot_accuracy, run_ann

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_reference import load_torch_model  # noqa: E402

RESULTS = HERE / "results"
TIMESTEPS = (4, 8, 16, 32, 64, 128)
TUNED_T = 16
CALIBRATION = 1000
MODELS = ("seed_mnist_net", "seed_cifar_net", "cnn_bn", "resnet_small")
CONFIGS = {  # label: convert() options, all spelled out (the defaults change, these rows do not)
    "max": {"method": "max", "per_channel": False, "corrections": ()},
    "percentile:99.99": {"method": "percentile:99.99", "per_channel": False, "corrections": ()},
    "spike-norm": {"method": "spike-norm", "per_channel": False, "corrections": ()},
    "spike-norm:seed": {"method": "spike-norm:seed", "per_channel": False, "corrections": ()},
    "mmse per-channel": {"method": "mmse", "per_channel": True, "corrections": ()},
    "mmse per-channel + bias": {"method": "mmse", "per_channel": True, "corrections": ("bias",)},
    "mmse per-channel + potential": {"method": "mmse", "per_channel": True, "corrections": ("potential",)},
    "mmse per-channel + bias + potential": {
        "method": "mmse",
        "per_channel": True,
        "corrections": ("bias", "potential"),
    },
    "spike-norm:seed + potential": {"method": "spike-norm:seed", "per_channel": False, "corrections": ("potential",)},
}
SPIKINGJELLY = {  # label: RateCodingRecipe options
    "SpikingJelly max": {"mode": "max"},
    "SpikingJelly 99.9%": {"mode": "99.9%"},
    "SpikingJelly 99.9% channel-wise": {"mode": "99.9%", "channel_wise": True, "half_threshold": True},
}


def spikingjelly_curve(name: str, options: dict, calibration: np.ndarray, test: onnx2snn.Dataset) -> dict:
    import torch
    from spikingjelly.activation_based import ann2snn, functional

    loader = [torch.tensor(calibration[i : i + 100]) for i in range(0, len(calibration), 100)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, **options)
    snn = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(load_torch_model(name)).eval()
    correct = np.zeros(max(TIMESTEPS))
    with torch.no_grad():
        for i in range(0, len(test), 500):
            x = torch.tensor(test.x[i : i + 500])
            y = torch.tensor(test.y[i : i + 500])
            functional.reset_net(snn)
            total = None
            for t in range(max(TIMESTEPS)):
                out = snn(x)
                total = out if total is None else total + out
                correct[t] += (total.argmax(1) == y).sum().item()
    return {str(t): correct[t - 1] / len(test) for t in TIMESTEPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--samples", type=int, default=2000, help="the first N test images (2000)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--no-peers", action="store_true", help="skip SpikingJelly")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), help="onnx2snn configurations (labels)")
    parser.add_argument("--peers", nargs="+", default=list(SPIKINGJELLY), help="SpikingJelly modes (labels)")
    parser.add_argument("--tag", default="", help="results go to calibration<tag>.{md,json,png}")
    parser.add_argument("--merge", action="store_true", help="add these rows to the results already written")
    args = parser.parse_args()
    train = onnx2snn.load_data("fashion-mnist:train").sample(CALIBRATION, seed=0)
    test = onnx2snn.load_data("fashion-mnist:test").head(args.samples)
    results = {}
    for model in args.models:
        path = HERE / "models" / f"fashion_mnist_{model}.onnx"
        rows = {}
        ann = float((run_ann(onnx.load(str(path)), test.x).argmax(1) == test.y).mean())
        for label in args.configs:
            options = CONFIGS[label]
            start = time.time()
            snn = onnx2snn.convert(path, train, timesteps=TUNED_T, **options)
            seconds = time.time() - start
            report = evaluate(snn, test, list(TIMESTEPS))
            rows[label] = {
                "accuracy": {t: r["accuracy"] for t, r in report["snn"].items()},
                "convert_seconds": round(seconds, 1),
            }
            print(
                f"{model:15s} {label:38s} "
                + " ".join(f"{100 * a:6.2f}" for a in rows[label]["accuracy"].values())
                + f"   (ANN {100 * ann:.2f}, convert {seconds:.0f}s)",
                flush=True,
            )
        if not args.no_peers:
            for label in args.peers:
                options = SPIKINGJELLY[label]
                try:
                    curve = spikingjelly_curve(model, options, train.x, test)
                except Exception as e:  # a peer's failure is a result too
                    print(f"{model:15s} {label:38s} failed: {type(e).__name__}: {e}", flush=True)
                    rows[label] = {"error": f"{type(e).__name__}: {e}"}
                    continue
                rows[label] = {"accuracy": curve}
                print(f"{model:15s} {label:38s} " + " ".join(f"{100 * a:6.2f}" for a in curve.values()), flush=True)
        results[model] = {"ann": ann, "samples": len(test), "rows": rows}
    if not args.no_write:
        if args.merge and (RESULTS / f"calibration{args.tag}.json").exists():
            old = json.loads((RESULTS / f"calibration{args.tag}.json").read_text())
            for model, res in results.items():
                if model in old:
                    old[model]["rows"].update(res["rows"])
                else:
                    old[model] = res
            results = old
        write(results, args.tag)


def write(results: dict, tag: str = "") -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"calibration{tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Calibration quality (generated by benchmarks/accuracy.py)",
        "",
        f"Fashion-MNIST test set, top-1 accuracy (%) at T timesteps; {CALIBRATION} calibration images; "
        f"onnx2snn's T-dependent calibration tuned for T={TUNED_T}. Rows without `per-channel` have one "
        "threshold per layer; rows without `+ bias`/`+ potential` no correction. convert's default is "
        "`mmse per-channel + potential`. **Bold**: the best at that T.",
    ]
    for model, res in results.items():
        lines += [
            "",
            f"## `{model}` (ANN {100 * res['ann']:.2f}%, {res['samples']} test images)",
            "",
            "| configuration | " + " | ".join(f"T={t}" for t in TIMESTEPS) + " |",
            "|---|" + "---|" * len(TIMESTEPS),
        ]
        ok = {k: v for k, v in res["rows"].items() if "accuracy" in v}
        best = {str(t): max(v["accuracy"][str(t)] for v in ok.values()) for t in TIMESTEPS}
        for label, row in res["rows"].items():
            if "error" in row:
                lines.append(f"| {label} | failed: {row['error']} |" + " |" * (len(TIMESTEPS) - 1))
                continue
            cells = []
            for t in TIMESTEPS:
                a = row["accuracy"][str(t)]
                cells.append(f"**{100 * a:.2f}**" if a == best[str(t)] else f"{100 * a:.2f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        curves = {label: {int(t): a for t, a in row["accuracy"].items()} for label, row in ok.items()}
        plot_accuracy(
            curves,
            RESULTS / f"calibration{tag}_{model}.png",
            {model: res["ann"]},
            title=f"{model}: calibration methods vs SpikingJelly",
            label_prefix="",
        )
        lines += ["", f"![{model}](calibration{tag}_{model}.png)"]
    (RESULTS / f"calibration{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
