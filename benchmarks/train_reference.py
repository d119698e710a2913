"""Train the reference ANNs on Fashion-MNIST (CPU, minutes) and export them to ONNX.

    python benchmarks/train_reference.py            # all of them, writes benchmarks/models/
    python benchmarks/train_reference.py cnn_bn     # one of them

Models:
- ``seed_mnist_net``  the original research script's MNIST net: conv 1->15 k5 p2, ReLU, AvgPool2,
                      conv 15->40 k5 p2, ReLU, AvgPool2, Linear 1960->300, ReLU, Linear 300->10
- ``seed_cifar_net``  its CIFAR10 net adapted to one channel: conv 8 k5, ReLU, AvgPool2, conv 16 k3,
                      ReLU, AvgPool2, conv 32 k3, ReLU, Linear 288->10 (all bias-free, like the seed's)
- ``cnn_bn``          a stronger CNN with biases and BatchNorm (also the bundled demo model)
- ``resnet_small``    a ResNet-style net: stem, three basic blocks with residual adds (one 1x1
                      downsample shortcut per stride), global average pooling

Inputs are images scaled to [0, 1], NCHW [N, 1, 28, 28]. Each ONNX keeps its BatchNormalization
nodes (onnx2snn folds them). Accuracies on the full test set go to ``models/reference.json``.
Also writes the demo bundle (model + 500 calibration and 1,000 test images) into the package.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).parent
MODELS = HERE / "models"
ASSETS = HERE.parent / "onnx2snn" / "assets"


def seed_mnist_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 15, 5, padding=2, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(15, 40, 5, padding=2, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(1960, 300, bias=False),
        nn.ReLU(),
        nn.Linear(300, 10, bias=False),
    )


def seed_cifar_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 3 * 3, 10, bias=False),
    )


def cnn_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet_small() -> nn.Module:
    """A ResNet-style net with residual adds: stem, three basic blocks, global average pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        BasicBlock(16, 16),
        BasicBlock(16, 32, 2),
        BasicBlock(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


RECIPES = {  # name: (builder, epochs, learning rate)
    "seed_mnist_net": (seed_mnist_net, 4, 2e-3),
    "seed_cifar_net": (seed_cifar_net, 6, 5e-3),
    "cnn_bn": (cnn_bn, 5, 2e-3),
    "resnet_small": (resnet_small, 5, 4e-3),
}


def load_torch_model(name: str) -> nn.Module:
    """The reference ANN as a torch module with the weights of its committed ONNX file (exported
    without constant folding, so the initializers carry the state_dict names)."""
    import onnx
    from onnx import numpy_helper

    net = RECIPES[name][0]()
    model = onnx.load(str(MODELS / f"fashion_mnist_{name}.onnx"))
    weights = {t.name: torch.tensor(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    # the exporter shares identical initializers: a duplicate is an Identity of the first one
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            weights.setdefault(node.output[0], weights[node.input[0]])
    missing = [k for k in net.state_dict() if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise RuntimeError(f"{name}: weights not in the ONNX file: {missing}")
    net.load_state_dict({k: weights[k] for k in net.state_dict() if k in weights}, strict=False)
    return net.eval()


def load(split: str):
    import onnx2snn

    d = onnx2snn.load_data(f"fashion-mnist:{split}")
    return torch.tensor(d.x), torch.tensor(d.y)


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return float(
            sum((net(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum() for i in range(0, len(x), 1000)) / len(x)
        )


def train(name: str, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    build, epochs, lr = RECIPES[name]
    torch.manual_seed(0)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((len(x) + 127) // 128))
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x))
        start = time.time()
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        print(f"  {name} epoch {epoch + 1}/{epochs}: {time.time() - start:.0f}s", flush=True)
    return net.eval()


def export(net: nn.Module, path: Path) -> None:
    import onnx

    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=False,  # keep BatchNormalization visible: onnx2snn folds it
    )
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, 10)
    onnx.save(model, str(path))


def write_demo_bundle(model_path: Path) -> None:
    import shutil

    import onnx2snn

    train_set = onnx2snn.load_data("fashion-mnist:train", preprocessing=onnx2snn.Preprocessing(scale=1.0))
    test_set = onnx2snn.load_data("fashion-mnist:test", preprocessing=onnx2snn.Preprocessing(scale=1.0))
    rng = np.random.default_rng(0)
    cal = np.sort(rng.choice(len(train_set), 500, replace=False))
    ASSETS.mkdir(exist_ok=True)
    np.savez_compressed(
        ASSETS / "fashion_mnist_demo.npz",
        x_calibration=train_set.x[cal].astype(np.uint8),
        x_test=test_set.x[:1000].astype(np.uint8),
        y_test=test_set.y[:1000].astype(np.uint8),
    )
    shutil.copy(model_path, ASSETS / "fashion_mnist_cnn_bn.onnx")


def main(names: list[str]) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x, y = load("train")
    xt, yt = load("test")
    MODELS.mkdir(exist_ok=True)
    results_path = MODELS / "reference.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in names:
        start = time.time()
        net = train(name, x, y)
        acc = accuracy(net, xt, yt)
        path = MODELS / f"fashion_mnist_{name}.onnx"
        export(net, path)
        results[name] = {"file": path.name, "test_accuracy": acc, "train_seconds": round(time.time() - start)}
        print(f"{name}: test accuracy {100 * acc:.2f}% -> {path}", flush=True)
        if name == "cnn_bn":
            write_demo_bundle(path)
    results_path.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or list(RECIPES))
