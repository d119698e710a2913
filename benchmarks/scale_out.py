"""How evaluation, calibration and fine-tuning divide over Ray workers: 1 against 2 local
workers, side by side, with what each round sends and returns.

    pip install 'onnx2snn[ray]'
    python benchmarks/scale_out.py          # writes benchmarks/results/scale_out.{md,json}

On the reference CNN (`cnn_bn`): `eval` of 2,000 test images at T = 32 in one process and on a
local Ray cluster of 1 and 2 workers; `convert` with the default method and corrections (1,000
calibration images) likewise; `finetune` (4-bit weights per channel, one epoch on 6,000 training
images, batch 64) in one process and data-parallel over 1 and 2 Ray Train workers, with the
final loss (the same within float noise) and the bytes worker 0 sends back (the parameters).
Per calibration round (a method call on every worker): its wall time and the bytes the workers
return to the driver (pickled), which is what the driver merges.
The machine has 2 cores: 2 workers can at best halve the work that shards, not Ray's start or the
driver's own part.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODEL = HERE / "models" / "fashion_mnist_cnn_bn.onnx"
EVAL = {"data": "fashion-mnist:test", "limit": 2000, "timesteps": [32], "batch_size": 64}
CONVERT = {"calibration_samples": 1000}
FINETUNE = {"weight_bits": 4, "channel_wise": True, "epochs": 1, "samples": 6000}


def measure_rounds():
    """Record every calibration round: method, seconds, bytes returned by all workers."""
    from onnx2snn.distributed.calibrate import RayWorkers

    rounds: list[dict] = []
    call = RayWorkers.call

    def timed(self, method, *args):
        start = time.perf_counter()
        result = call(self, method, *args)
        rounds.append(
            {"method": method, "seconds": time.perf_counter() - start, "bytes": len(pickle.dumps(result, protocol=5))}
        )
        return result

    RayWorkers.call = timed
    return rounds


def main() -> None:
    import ray

    import onnx2snn

    rounds = measure_rounds()
    out: dict = {"eval": {}, "convert": {}, "finetune": {}}
    snn_path = Path("/tmp/onnx2snn-scale-out.onnx")
    start = time.perf_counter()
    snn = onnx2snn.convert(str(MODEL), "fashion-mnist:train", **CONVERT)
    out["convert"]["one process"] = {"seconds": time.perf_counter() - start}
    snn.save(snn_path)
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            rounds.clear()
            start = time.perf_counter()
            sharded = onnx2snn.convert(str(MODEL), "fashion-mnist:train", workers=workers, **CONVERT)
            seconds = time.perf_counter() - start
            same = all(np.array_equal(sharded.thresholds[k], v) for k, v in snn.thresholds.items())
            out["convert"][f"{workers} Ray workers"] = {
                "seconds": seconds,
                "equal_thresholds": same,
                "rounds": len(rounds),
                "round_seconds": sum(r["seconds"] for r in rounds),
                "bytes_returned": sum(r["bytes"] for r in rounds),
                "by_method": {
                    m: {
                        "rounds": sum(1 for r in rounds if r["method"] == m),
                        "seconds": sum(r["seconds"] for r in rounds if r["method"] == m),
                        "bytes": sum(r["bytes"] for r in rounds if r["method"] == m),
                    }
                    for m in dict.fromkeys(r["method"] for r in rounds)
                },
            }
            start = time.perf_counter()
            report = onnx2snn.evaluate(snn_path, workers=workers, **EVAL)
            out["eval"][f"{workers} Ray workers"] = {
                "seconds": time.perf_counter() - start,
                "accuracy": report["snn"]["32"]["accuracy"],
                "shards": report["distributed"]["shards"],
            }
            start = time.perf_counter()
            tuned = onnx2snn.finetune(str(MODEL), "fashion-mnist:train", workers=workers, **FINETUNE)
            out["finetune"][f"{workers} Ray workers"] = {
                "seconds": time.perf_counter() - start,
                "epoch_seconds": tuned.log[-1]["seconds"],
                "loss": tuned.log[-1]["loss"],
                "bytes_returned": sum(p.numel() * 4 for p in onnx2snn.to_torch(str(MODEL)).parameters()),
            }
        finally:
            ray.shutdown()
    start = time.perf_counter()
    tuned = onnx2snn.finetune(str(MODEL), "fashion-mnist:train", **FINETUNE)
    out["finetune"]["one process"] = {
        "seconds": time.perf_counter() - start,
        "epoch_seconds": tuned.log[-1]["seconds"],
        "loss": tuned.log[-1]["loss"],
    }
    start = time.perf_counter()
    report = onnx2snn.evaluate(snn_path, **EVAL)
    out["eval"]["one process"] = {"seconds": time.perf_counter() - start, "accuracy": report["snn"]["32"]["accuracy"]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale_out.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "scale_out.md").write_text(table(out))
    print(table(out))


def table(out: dict) -> str:
    lines = [
        "# Scale-out over Ray (generated by benchmarks/scale_out.py)",
        "",
        "`cnn_bn`, CPU with 2 cores (a shared machine: one run each). Wall time of the whole call, "
        "Ray's start of the local cluster included.",
        "",
        f"## eval: {EVAL['limit']} test images, T = 32, batch {EVAL['batch_size']}",
        "",
        "| run | seconds | accuracy | per shard (seconds) |",
        "|---|---|---|---|",
    ]
    for name, r in out["eval"].items():
        shards = ", ".join(f"{s['seconds']:.1f}" for s in r.get("shards", []))
        lines.append(f"| {name} | {r['seconds']:.1f} | {100 * r['accuracy']:.2f}% | {shards} |")
    lines += [
        "",
        f"## convert: default method and correction, {CONVERT['calibration_samples']} calibration images",
        "",
        "| run | seconds | thresholds equal | rounds | MB returned to the driver |",
        "|---|---|---|---|---|",
    ]
    for name, r in out["convert"].items():
        if "rounds" not in r:
            lines.append(f"| {name} | {r['seconds']:.1f} | | | |")
            continue
        megabytes = r["bytes_returned"] / 1e6
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['equal_thresholds']} | {r['rounds']} | {megabytes:.1f} |")
    lines += [
        "",
        f"## finetune: 4-bit weights per channel, 1 epoch on {FINETUNE['samples']} images, batch 64",
        "",
        "| run | seconds | epoch seconds | final loss | MB sent back by worker 0 |",
        "|---|---|---|---|---|",
    ]
    for name, r in out["finetune"].items():
        sent = f"{r['bytes_returned'] / 1e6:.2f}" if "bytes_returned" in r else ""
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['epoch_seconds']:.1f} | {r['loss']:.6f} | {sent} |")
    for name, r in out["convert"].items():
        if "by_method" in r:
            lines += ["", f"Rounds of {name}:", "", "| call | rounds | seconds | MB returned |", "|---|---|---|---|"]
            for m, v in r["by_method"].items():
                lines.append(f"| {m} | {v['rounds']} | {v['seconds']:.1f} | {v['bytes'] / 1e6:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
