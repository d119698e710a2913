"""NIR out, simulated elsewhere: top-1 agreement of sinabs (and Norse) with onnx2snn.

    pip install 'onnx2snn[nir]' sinabs==3.1.3 torch==2.13.0 && pip install --no-deps norse==1.1.0
    python benchmarks/nir_agreement.py                        # writes benchmarks/results/nir_agreement.{md,json}
    python benchmarks/nir_agreement.py --models cnn_bn --samples 100 --no-write   # a quicker look
    python benchmarks/nir_agreement.py --variants "reset to zero, Norse as the report says" --tag _norse

Each reference ANN (benchmarks/models) is converted as NIR can say it: mmse thresholds per
channel, no correction, membranes starting at 0 (``--v-init 0``), single-spike IF (and once more
with multi-spike IF; and with ``--reset zero`` for Norse). The artifact is written as a ``.nir``
file (``onnx2snn.to_nir``), read back with ``nir.read`` and simulated for T = 64 steps on the
first test images:

- in sinabs 3.1 (``sinabs.from_nir``) as it reads the file (multi-spike IAF, membranes clamped
  at -v_threshold), and as the export report tells (``SingleSpike``, ``min_v_mem=None``);
- in Norse 1.1 (``norse.torch.from_nir``: IAF resetting to 0, firing above threshold) for the
  reset-to-zero artifact, its Flatten layers set as the report says;

and its top-1 prediction (mean output over the 64 steps) compared with onnx2snn's on the same
artifact. The default artifact (v_init 0.5 with potential correction) is exported too with
``initial_membrane="drop"``, to show what starting at 0 costs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import onnx2snn

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODELS = ("seed_mnist_net", "seed_cifar_net", "cnn_bn", "resnet_small")
CALIBRATION = 1000
NIR_READY = {"method": "mmse", "per_channel": True, "corrections": (), "v_init": 0.0, "timesteps": 16}
VARIANTS = {  # label: (convert options, export options, simulator, simulator settings)
    "single-spike IF, sinabs as the report says": ({}, {}, "sinabs", {"single": True, "floor": False}),
    "multi-spike IF, sinabs as read": ({"spike_mode": "multi"}, {}, "sinabs", {}),
    "single-spike IF, sinabs as read": ({}, {}, "sinabs", {}),
    "reset to zero, Norse as the report says": ({"reset": "zero"}, {}, "norse", {}),
    "default artifact (v_init 0.5 + potential), initial membrane dropped, sinabs as the report says": (
        {"corrections": ("potential",), "v_init": 0.5},
        {"initial_membrane": "drop"},
        "sinabs",
        {"single": True, "floor": False},
    ),
}


def simulate_sinabs(graph, x: np.ndarray, timesteps: int, single: bool = False, floor: bool = True) -> np.ndarray:
    """Mean output over ``timesteps`` steps of the graph in sinabs, the input repeated every step."""
    import sinabs
    import sinabs.layers as sl
    import torch

    outputs = []
    for start in range(0, len(x), 50):
        batch = torch.from_numpy(x[start : start + 50])
        n = len(batch)
        net = sinabs.from_nir(graph, batch_size=n)
        for module in net.modules():
            if isinstance(module, sl.IAFSqueeze):
                if not floor:
                    module.min_v_mem = None
                if single:
                    module.spike_fn = sinabs.activation.SingleSpike
        repeated = batch[:, None].expand(n, timesteps, *batch.shape[1:]).reshape(n * timesteps, *batch.shape[1:])
        with torch.no_grad():
            out = net(repeated)
        out = out[0] if isinstance(out, tuple) else out
        outputs.append(out.reshape(n, timesteps, -1).mean(1).numpy())
    return np.concatenate(outputs)


def simulate_norse(graph, x: np.ndarray, timesteps: int) -> np.ndarray:
    import norse.torch as norse
    import torch

    outputs = []
    for start in range(0, len(x), 50):
        batch = torch.from_numpy(x[start : start + 50])
        net = norse.from_nir(graph)
        for module in net.modules():  # as the export report says: Norse reads Flatten's dims as torch's
            if isinstance(module, torch.nn.Flatten) and module.start_dim >= 0:
                module.start_dim += 1
        state, total = None, 0
        with torch.no_grad():
            for _ in range(timesteps):
                out, state = net(batch, state)
                total = total + out
        outputs.append((total / timesteps).numpy())
    return np.concatenate(outputs)


def main() -> None:
    import nir
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--timesteps", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the results' file names (nir_agreement<tag>.md)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json, simulate nothing")
    args = parser.parse_args()
    if args.table_only:
        results = json.loads((RESULTS / f"nir_agreement{args.tag}.json").read_text())
        (RESULTS / f"nir_agreement{args.tag}.md").write_text(table(results))
        return
    torch.set_num_threads(2)

    calibration = onnx2snn.load_data("fashion-mnist:train").sample(CALIBRATION, 0)
    test = onnx2snn.load_data("fashion-mnist:test").head(args.samples)
    x, y = test.x.astype(np.float32), test.y
    results: dict = {"samples": len(x), "timesteps": args.timesteps, "calibration": CALIBRATION, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.variants:  # the main variants first, on every model; written as they come
            for name in args.models:
                ann = HERE / "models" / f"fashion_mnist_{name}.onnx"
                convert_options, export_options, simulator, settings = VARIANTS[label]
                snn = onnx2snn.convert(ann, calibration, **{**NIR_READY, **convert_options})
                export = onnx2snn.to_nir(snn, **export_options)
                path = Path(tmp) / f"{name}.nir"
                onnx2snn.save_nir(export, path)
                graph = nir.read(str(path))
                began = time.perf_counter()
                ours = onnx2snn.SNNSession(snn).run(x, args.timesteps)
                ours_seconds = time.perf_counter() - began
                began = time.perf_counter()
                if simulator == "sinabs":
                    theirs = simulate_sinabs(graph, x, args.timesteps, **settings)
                else:
                    theirs = simulate_norse(graph, x, args.timesteps)
                seconds = time.perf_counter() - began
                row = {
                    "agreement": float((theirs.argmax(1) == ours.argmax(1)).mean()),
                    "onnx2snn_accuracy": float((ours.argmax(1) == y).mean()),
                    "simulator_accuracy": float((theirs.argmax(1) == y).mean()),
                    "max_output_difference": float(np.abs(theirs - ours).max()),
                    "simulator": simulator,
                    "simulator_seconds": round(seconds, 1),
                    "onnx2snn_seconds": round(ours_seconds, 1),
                    "nir_bytes": path.stat().st_size,
                    "deviations": export.deviations,
                }
                results["models"].setdefault(name, {})[label] = row
                print(
                    f"{name:15s} {label:60.60s} agreement {100 * row['agreement']:6.2f}%  "
                    f"acc {100 * row['onnx2snn_accuracy']:.2f} / {100 * row['simulator_accuracy']:.2f}  "
                    f"({seconds:.0f} s)",
                    flush=True,
                )
                if not args.no_write:
                    onnx2snn.save_json(results, RESULTS / f"nir_agreement{args.tag}.json")
                    (RESULTS / f"nir_agreement{args.tag}.md").write_text(table(results))


def table(results: dict) -> str:
    lines = [
        f"# NIR agreement: onnx2snn vs. the simulator reading its `.nir` file, T = {results['timesteps']}",
        "",
        f"First {results['samples']} Fashion-MNIST test images; {results['calibration']} calibration images; "
        "top-1 agreement of the mean output over the steps. Regenerate: `python benchmarks/nir_agreement.py`.",
        "",
        "| model | artifact, simulator | agreement | onnx2snn acc | simulator acc | max output difference "
        "| seconds (sim / onnx2snn) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in results["models"].items():
        for label, r in rows.items():
            lines.append(
                f"| `{name}` | {label} | {100 * r['agreement']:.2f}% | {100 * r['onnx2snn_accuracy']:.2f} | "
                f"{100 * r['simulator_accuracy']:.2f} | {r['max_output_difference']:.2g} | "
                f"{r['simulator_seconds']:.0f} / {r['onnx2snn_seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
