"""SNN simulation speed, side by side in one run on the same network and inputs.

    pip install -r benchmarks/requirements.txt       # the peers, benchmark environment only
    python benchmarks/speed.py                       # writes benchmarks/results/speed.{md,json}
    python benchmarks/speed.py --profiles-only       # the same tables, only the profiles redone

Per network (reference CNN with BatchNorm, ResNet-style net), T in {32, 128}, batch 64 and 1:
- ``ann (dense limit)``: the ANN alone in onnxruntime, time x T: what any T-step simulation
  of the same network would cost if the neurons were free (with and without onnxruntime's
  spinning threads, whichever is faster);
- ``onnx2snn``: SNNSession's step form (prefix once, T steps with IOBinding), CPU provider,
  compiled neurons on onnxruntime's blocked layout, several steps a run at small batches;
- ``onnx2snn-plain-layout``: the same with plain NCHW tensors at the neurons and one step a
  run (the compiled neurons before runtime/blocked.py and compiled.chunk);
- ``onnx2snn-onnx-neurons``: the step form with the neurons as ONNX operators;
- ``onnx2snn-unrolled``: its unrolled form (all T steps in one run, 2 GB budget);
- ``pytorch eager``: the same network in PyTorch with IF modules, a Python loop over T;
- ``spikingjelly``: SpikingJelly 2.0's converted network (IFNode, single-step mode, its usual
  way of simulating a converted ANN), a loop over T;
- ``spikingjelly-multistep``: the same network with every IFNode in multi-step mode: the input
  repeated T times along the batch, the layers run once on all T x N samples, each IFNode
  steps through [T, N, ...] (its outputs equal the single-step loop's).
After the measurements, onnxruntime's profile of the step form with ONNX neurons (T = 32,
batch 64; profiling needs them) says where a step's time goes, by operator type. The networks
are converted once beforehand; each measurement runs in its own process that only loads its
network (peak memory = its peak resident set size while running minus its size after loading)
and reports the best of 3
repetitions; the frameworks take turns over 2 rounds (a slow minute of the machine hits them
all) and each keeps its best. The machine is shared and noisy: only ratios within one run mean
anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODELS = ("cnn_bn", "resnet_small", "resnet_wide")
TIMESTEPS = (32, 128)
BATCHES = (64, 1)
FRAMEWORKS = (
    "ann",
    "onnx2snn",
    "onnx2snn-plain-layout",
    "onnx2snn-onnx-neurons",
    "onnx2snn-unrolled",
    "pytorch",
    "spikingjelly",
    "spikingjelly-multistep",
)
REPEAT = 3
ROUNDS = 2
PROFILED = (32, 64)  # T and batch of the step form's profile
ARTIFACTS = "ONNX2SNN_SPEED_ARTIFACTS"  # where main() leaves the converted networks for its children
THREADS = "ONNX2SNN_SPEED_THREADS"  # --threads, for the children: every framework's intra-op threads


def threads() -> int | None:
    return int(os.environ[THREADS]) if os.environ.get(THREADS) else None


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def start_peak() -> float:
    """Reset the peak resident set size to the current one (Linux); returns the current size."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except OSError:  # elsewhere: the lifetime peak, which loading may already have set
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak() -> float:
    try:
        return _status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resnet_wide():
    """A held-out, wider ResNet: channels 64 to 128 at 28x28 and 14x14 (BatchNorm, residual adds,
    global pooling), random weights with BatchNorm statistics from training images
    (benchmarks/realsize.py's initialization); built the same in every process."""
    import torch
    from torch import nn

    sys.path.insert(0, str(HERE))
    from realsize import initialize
    from train_reference import BasicBlock

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        BasicBlock(64, 64),
        BasicBlock(64, 128, 2),
        BasicBlock(128, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    import onnx2snn

    return initialize(net, onnx2snn.load_data("fashion-mnist:train").sample(512, seed=1).x)


def ann_path(name: str) -> Path:
    """The ANN's ONNX file: a committed reference net, or the wide ResNet exported once."""
    if name != "resnet_wide":
        return HERE / "models" / f"fashion_mnist_{name}.onnx"
    path = Path(os.environ.get(ARTIFACTS, tempfile.gettempdir())) / "resnet_wide_ann.onnx"
    if not path.exists():
        import torch

        net = resnet_wide()
        buffer_path = path.with_suffix(".tmp.onnx")
        torch.onnx.export(
            net.eval(),
            (torch.zeros(1, 1, 28, 28),),
            str(buffer_path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=False,
        )
        buffer_path.rename(path)
    return path


def torch_model(name: str):
    sys.path.insert(0, str(HERE))
    from train_reference import load_torch_model

    return resnet_wide().eval() if name == "resnet_wide" else load_torch_model(name)


def images(batch: int) -> np.ndarray:
    import onnx2snn

    return onnx2snn.load_data("fashion-mnist:test").x[:batch]


def convert_all(models: list[str], folder: Path) -> None:
    """Convert each network once (convert's defaults, 500 calibration images); the measuring
    processes only load the artifacts, so conversion counts in no one's time or memory."""
    import onnx2snn

    calibration = onnx2snn.load_data("fashion-mnist:train").sample(500, seed=0)
    os.environ[ARTIFACTS] = str(folder)
    for name in models:
        onnx2snn.convert(ann_path(name), calibration).save(folder / f"{name}.onnx")


def snn_model(name: str):
    import onnx2snn

    return onnx2snn.load(Path(os.environ[ARTIFACTS]) / f"{name}.onnx")


def measure(framework: str, name: str, steps: int, batch: int) -> dict:
    """Seconds for one batch of T steps (best of REPEAT), and the peak memory it added."""
    x = images(batch)
    if framework == "ann":
        from onnx2snn import ann_session

        runs = []
        for spin in (True, False):  # the dense limit is the ANN's faster setting, never the SNN's choice
            session, input_name = ann_session(onnx.load(ann_path(name)), "cpu", batch, spin, threads())

            def run(session=session, input_name=input_name):
                for _ in range(steps):  # the dense limit: T passes of the ANN
                    session.run(None, {input_name: x})

            runs.append(run)
    elif framework.startswith("onnx2snn"):
        import onnx2snn

        form = "unrolled" if framework.endswith("unrolled") else "step"
        neurons = "onnx" if framework.endswith("onnx-neurons") else "auto"
        if framework.endswith("plain-layout"):  # the compiled neurons as they were before the blocked layout
            from onnx2snn.runtime import blocked, compiled

            blocked.block_size = lambda: None  # plain NCHW tensors at every neuron
            compiled.MAX_CHUNK = 1  # one step a run
        session = onnx2snn.SNNSession(
            snn_model(name), providers="cpu", batch_size=batch, form=form, neurons=neurons, threads=threads()
        )

        def run():
            session.run(x, steps)
    else:
        import torch

        torch.set_num_threads(threads() or len(os.sched_getaffinity(0)))

        if framework == "pytorch":
            net = with_if_neurons(torch_model(name), snn_model(name))
            xt = torch.tensor(x)

            def run():
                with torch.no_grad():
                    reset(net)
                    total = 0
                    for _ in range(steps):
                        total = total + net(xt)
        else:
            from spikingjelly.activation_based import ann2snn, functional

            calibration = [torch.tensor(images(500)[i : i + 100]) for i in range(0, 500, 100)]
            recipe = ann2snn.RateCodingRecipe(dataloader=calibration, mode="max")
            net = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(torch_model(name)).eval()
            xt = torch.tensor(x)
            if framework == "spikingjelly-multistep":
                multi_step(net, steps)
                xt = xt.repeat(steps, *([1] * (xt.dim() - 1)))

                def run():
                    with torch.no_grad():
                        functional.reset_net(net)
                        net(xt).reshape(steps, batch, -1).sum(0)

            else:

                def run():
                    with torch.no_grad():
                        functional.reset_net(net)
                        total = 0
                        for _ in range(steps):
                            total = total + net(xt)

    from onnx2snn.tools.timing import best_time

    if framework != "ann":
        runs = [run]
    base = start_peak()  # models loaded, nothing run yet
    # the warm-up counts in the peak: the first run allocates the working memory
    best = min(best_time(run, REPEAT) for run in runs)
    return {"seconds": best, "peak_mb": max(peak() - base, 0.0)}


GROUPS = {
    "Conv": "convolutions and dense layers",
    "Gemm": "convolutions and dense layers",
    "MatMul": "convolutions and dense layers",
    "Add": "elementwise: IF neurons (and residual adds)",
    "Sub": "elementwise: IF neurons (and residual adds)",
    "Mul": "elementwise: IF neurons (and residual adds)",
    "HardSigmoid": "elementwise: IF neurons (and residual adds)",
    "ReorderInput": "layout reorders (blocked <-> plain)",
    "ReorderOutput": "layout reorders (blocked <-> plain)",
}


def profile(name: str, steps: int, batch: int) -> list[dict]:
    """Where the step form's time goes: onnxruntime's profile of ``steps`` steps on ``batch``
    images (after one unprofiled warm-up), by operator type, largest first."""
    import onnx2snn

    x = images(batch)
    onnx2snn.SNNSession(snn_model(name), providers="cpu", batch_size=batch, form="step", threads=threads()).run(
        x, steps
    )
    session = onnx2snn.SNNSession(
        snn_model(name), providers="cpu", batch_size=batch, form="step", profile=True, threads=threads()
    )
    for _ in range(REPEAT):
        session.run(x, steps)
    rows = session.profile()
    for row in rows:
        row["ms_per_step"] = row["microseconds"] / 1000 / (REPEAT * steps)
        row["group"] = GROUPS.get(row["op"], "other (pooling, reshapes, ...)")
    return rows


def with_if_neurons(net, snn):
    """Replace each nn.ReLU of ``net`` (in order) by an IF module with onnx2snn's thresholds."""
    import torch
    from torch import nn

    class IF(nn.Module):
        def __init__(self, threshold):
            super().__init__()
            self.threshold = torch.tensor(threshold)
            self.v = None

        def forward(self, x):
            if self.v is None:
                self.v = 0.5 * self.threshold.expand_as(x).clone()
            self.v = self.v + x
            spikes = (self.v >= self.threshold).to(x.dtype) * self.threshold
            self.v = self.v - spikes  # reset by subtraction
            return spikes

    thresholds = iter(snn.thresholds.values())
    relus = [
        (parent, key)
        for parent in net.modules()
        for key, child in parent.named_children()
        if isinstance(child, nn.ReLU)
    ]
    for parent, key in relus:
        setattr(parent, key, IF(next(thresholds)))
    return net


def multi_step(net, steps: int) -> None:
    """Switch every spiking neuron of ``net`` to multi-step mode; the layers between them see
    the T steps folded into the batch ([T * N, ...]), each neuron unfolds them ([T, N, ...])."""
    from spikingjelly.activation_based import neuron
    from torch import nn

    class MultiStep(nn.Module):
        def __init__(self, node):
            super().__init__()
            node.step_mode = "m"
            self.node = node

        def forward(self, x):
            return self.node(x.reshape(steps, -1, *x.shape[1:])).reshape(x.shape)

    for parent in list(net.modules()):
        for key, child in list(parent.named_children()):
            if isinstance(child, neuron.BaseNode):
                setattr(parent, key, MultiStep(child))


def reset(net) -> None:
    for m in net.modules():
        if hasattr(m, "v"):
            m.v = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS))
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="round-robin passes over the frameworks")
    parser.add_argument("--timesteps", nargs="+", type=int, default=list(TIMESTEPS))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of every framework")
    parser.add_argument(
        "--profiles-only", action="store_true", help="keep results/speed.json's measurements, redo the profiles"
    )
    parser.add_argument("--one", nargs=4, metavar=("FRAMEWORK", "MODEL", "T", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one measurement, printed as JSON
        framework, model, steps, batch = args.one
        print(json.dumps(measure(framework, model, int(steps), int(batch))))
        return
    rows = []
    folder = tempfile.TemporaryDirectory()
    convert_all(args.models, Path(folder.name))
    env = {**os.environ, ARTIFACTS: folder.name, **({THREADS: str(args.threads)} if args.threads else {})}
    os.environ[ARTIFACTS] = folder.name  # for profile() in this process
    if args.profiles_only:  # keep the committed measurements, redo the profiles and the tables
        rows = json.loads((RESULTS / "speed.json").read_text())["rows"]
        args.models = []
    for model in args.models:
        for steps in args.timesteps:
            for batch in args.batches:
                best: dict[str, dict] = {}
                for _ in range(args.rounds):  # round-robin: a slow minute of the machine hits every framework
                    for framework in args.frameworks:
                        out = subprocess.run(
                            [sys.executable, __file__, "--one", framework, model, str(steps), str(batch)],
                            capture_output=True,
                            text=True,
                            env=env,
                        )
                        if out.returncode != 0:
                            lines = out.stderr.strip().splitlines()
                            best[framework] = {"error": lines[-1] if lines else "failed"}
                            continue
                        row = json.loads(out.stdout.strip().splitlines()[-1])
                        old = best.get(framework)
                        if old and "seconds" in old:
                            row["peak_mb"] = max(row["peak_mb"], old["peak_mb"])
                            row["seconds"] = min(row["seconds"], old["seconds"])
                        best[framework] = row
                for framework, row in best.items():
                    if "seconds" in row:
                        row["images_per_s"] = batch / row["seconds"]
                        row["ms_per_step"] = 1000 * row["seconds"] / steps
                    rows.append({"model": model, "timesteps": steps, "batch": batch, "framework": framework, **row})
                    print(json.dumps(rows[-1]), flush=True)
    profiles = {model: profile(model, *PROFILED) for model in dict.fromkeys(r["model"] for r in rows)}
    write(rows, profiles, args.rounds, args.threads)


def write(rows: list[dict], profiles: dict[str, list[dict]], rounds: int = ROUNDS, threads: int | None = None) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps({"rows": rows, "profiles": profiles}, indent=2) + "\n")
    lines = [
        "# SNN simulation speed (generated by benchmarks/speed.py)",
        "",
        f"CPU only, {len(os.sched_getaffinity(0))} of the machine's {os.cpu_count()} cores"
        + (f", {threads} intra-op thread(s) in every framework" if threads else "")
        + "; each framework in its own process, round-robin, "
        f"{rounds} rounds of best-of-{REPEAT}: the best time and the largest peak memory count. "
        "Ratios are to onnx2snn's step form in the same run (higher = onnx2snn faster); "
        "`vs dense` is onnx2snn's time over T x the ANN's own onnxruntime time.",
        "",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [
            f"## `{model}`",
            "",
            "| T | batch | framework | images/s | ms/step | peak MB | onnx2snn speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for steps in TIMESTEPS:
            for batch in BATCHES:
                group = [r for r in rows if r["model"] == model and r["timesteps"] == steps and r["batch"] == batch]
                ours = next((r for r in group if r["framework"] == "onnx2snn" and "seconds" in r), None)
                for r in group:
                    if "seconds" not in r:
                        lines.append(f"| {steps} | {batch} | {r['framework']} | failed: {r['error']} | | | |")
                        continue
                    ratio = f"{r['seconds'] / ours['seconds']:.2f}x" if ours and r is not ours else ""
                    if ours and r["framework"] == "ann":
                        ratio = f"vs dense: {ours['seconds'] / r['seconds']:.2f}x"
                    lines.append(
                        f"| {steps} | {batch} | {r['framework']} | {r['images_per_s']:.1f} | "
                        f"{r['ms_per_step']:.3f} | {r['peak_mb']:.0f} | {ratio} |"
                    )
        lines.append("")
        if profiles.get(model):
            lines += profile_table(profiles[model])
    (RESULTS / "speed.md").write_text("\n".join(lines))


def profile_table(rows: list[dict]) -> list[str]:
    steps, batch = PROFILED
    total = sum(r["ms_per_step"] for r in rows)
    groups: dict[str, float] = {}
    for r in rows:
        groups[r["group"]] = groups.get(r["group"], 0.0) + r["ms_per_step"]
    lines = [
        "Where the step form with ONNX neurons spends its time (onnxruntime profile, which needs them; "
        f"T = {steps}, batch {batch}; operator time {total:.2f} ms a step):",
        "",
        "| share | ms/step | what |",
        "|---|---|---|",
    ]
    for group, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        ops = ", ".join(
            f"{r['op']} {100 * r['share']:.0f}%" for r in rows if r["group"] == group and r["share"] >= 0.005
        )
        lines.append(f"| {100 * ms / total:.0f}% | {ms:.2f} | {group}: {ops} |")
    return lines + [""]


if __name__ == "__main__":
    main()
