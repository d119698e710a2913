"""SNN simulation on a GPU against the CPU, in one go, for a machine that has one.

    pip install onnxruntime-gpu          # the wheel must match the machine's CUDA; see below
    python benchmarks/gpu.py             # writes benchmarks/results/gpu.{md,json}
    python benchmarks/gpu.py --providers cpu --timesteps 8 --no-write   # the same run, CPU only

For each reference network, T = 128 (``--timesteps``) and batch 64: the step form on the CPU,
then on each GPU provider that works here (CUDA, TensorRT) the step form (membranes kept on the
device through IOBinding) and the unrolled form (all steps in one run), with the ANN's T passes
as the dense limit on the same provider. Every GPU output is compared with the CPU step form's
(largest absolute difference and top-1 agreement). A provider that onnxruntime lists but that
does not work (no CUDA libraries, no device) is reported as such, not silently run on the CPU.

On a machine without network access, bring an onnxruntime-gpu wheel for its Python and CUDA
along and ``pip install`` the file; the converted networks need nothing else from onnx2snn's
side (the artifacts are plain ONNX).
"""

from __future__ import annotations

import argparse
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

import onnx2snn
from onnx2snn.runtime.providers import PREFERENCE, short_name, usable_providers
from onnx2snn.tools.timing import time_against_dense

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODELS = ("cnn_bn", "resnet_small")
REPEAT = 3


def _installed(distribution: str) -> bool:
    try:
        version(distribution)
        return True
    except PackageNotFoundError:
        return False


def measure(snn: onnx2snn.SNNModel, x: np.ndarray, provider: str, form: str, steps: int) -> tuple[dict, np.ndarray]:
    session = onnx2snn.SNNSession(snn, providers=short_name(provider), batch_size=len(x), form=form)
    if session.provider != provider:
        raise RuntimeError(f"asked for {provider}, onnxruntime gave {session.provider}")
    timing = time_against_dense(session, x, steps, REPEAT, short_name(provider))
    return {"provider": short_name(provider), "form": form, **timing}, session.run(x, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--timesteps", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--providers", nargs="+", default=None, help="default: CPU and every GPU provider here")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import onnxruntime as ort

    listed = [p for p in PREFERENCE if p in ort.get_available_providers()]
    installed = {d: version(d) for d in ("onnxruntime", "onnxruntime-gpu") if _installed(d)}
    if len(installed) > 1:  # both unpack into one package folder: the last installed wins
        print(f"warning: both {' and '.join(installed)} are installed; the GPU providers may be missing", flush=True)
    working = usable_providers()
    # the CPU first: its step form is the reference every GPU output is compared with
    order = PREFERENCE[-1:] + PREFERENCE[:-1]
    wanted = [p for p in order if args.providers is None or short_name(p) in args.providers]
    print(
        f"onnxruntime {ort.__version__}: lists {', '.join(map(short_name, listed))}; works: "
        f"{', '.join(map(short_name, working))}",
        flush=True,
    )
    calibration = onnx2snn.load_data("fashion-mnist:train").sample(500, seed=0)
    x = onnx2snn.load_data("fashion-mnist:test").x[: args.batch]
    rows = []
    for model in args.models:
        snn = onnx2snn.convert(HERE / "models" / f"fashion_mnist_{model}.onnx", calibration)
        reference = None
        for provider in wanted:
            forms = ("step",) if provider == "CPUExecutionProvider" else ("step", "unrolled")
            for form in forms:
                row = {"model": model, "timesteps": args.timesteps, "batch": len(x)}
                if provider not in working:
                    row.update(provider=short_name(provider), form=form, error="does not work on this machine")
                else:
                    try:
                        result, out = measure(snn, x, provider, form, args.timesteps)
                        row.update(result)
                        if reference is None:
                            reference = out
                        else:
                            row["max_abs_diff_vs_cpu"] = float(np.abs(out - reference).max())
                            row["agreement_vs_cpu"] = float((out.argmax(1) == reference.argmax(1)).mean())
                    except Exception as e:  # a provider's failure is a result too
                        row.update(provider=short_name(provider), form=form, error=f"{type(e).__name__}: {e}")
                rows.append(row)
                print(json.dumps(row), flush=True)
    if not args.no_write:
        write(rows)


def write(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# SNN simulation on GPU and CPU (generated by benchmarks/gpu.py)",
        "",
        "| model | T | batch | provider | form | images/s | ms/step | vs dense | vs CPU step "
        "| max diff, agreement vs CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cpu = {r["model"]: r for r in rows if r.get("provider") == "cpu" and "snn_seconds" in r}
    for r in rows:
        head = f"| {r['model']} | {r['timesteps']} | {r['batch']} | {r['provider']} | {r['form']} |"
        if "error" in r:
            lines.append(f"{head} failed: {r['error']} | | | | |")
            continue
        base = cpu.get(r["model"])
        speedup = f"{base['snn_seconds'] / r['snn_seconds']:.2f}x" if base and r is not base else ""
        diff = f"{r['max_abs_diff_vs_cpu']:.2g}, {100 * r['agreement_vs_cpu']:.1f}%" if "agreement_vs_cpu" in r else ""
        lines.append(
            f"{head} {r['images_per_s']:.1f} | {r['ms_per_step']:.3f} | {r['vs_dense_limit']:.2f}x "
            f"| {speedup} | {diff} |"
        )
    (RESULTS / "gpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
