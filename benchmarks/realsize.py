"""Real-size architectures at 3x224x224, as torchvision defines them (written out here: the
torchvision build on the package index does not load beside the CPU torch), with random weights
that keep activations in range and a head whose classes spread.

    ResNet-18, ResNet-50 (He et al. 2016), MobileNetV2 (Sandler et al. 2018), VGG-16 (Simonyan &
    Zisserman 2015)

Weights: torchvision's initialization (Kaiming normal, fan-out, for convolutions; N(0, 0.01) for
linear layers; BatchNorm scale 1, shift 0), then BatchNorm statistics set by a forward pass in
training mode over the calibration images (so every BatchNorm normalizes what it sees: activations
neither vanish nor explode through depth), then the head's bias moved so that each class's mean
logit over those images is zero (otherwise one class wins every input) and the head scaled so the
logits spread by one (random heads give logits within a few hundredths of each other: near-ties
that any simulation error flips). Inputs: Fashion-MNIST
images scaled to 224x224 and repeated over three channels, normalized.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU
) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act(inplace=True)) if act else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv = nn.Sequential(_conv_bn(cin, width, 3, stride), _conv_bn(width, width, 3, act=None))
        out = width * self.expansion
        self.downsample = _conv_bn(cin, out, 1, stride, act=None) if stride != 1 or cin != out else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x) + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        out = width * self.expansion
        self.conv = nn.Sequential(
            _conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride), _conv_bn(width, out, 1, act=None)
        )
        self.downsample = _conv_bn(cin, out, 1, stride, act=None) if stride != 1 or cin != out else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x) + self.downsample(x))


def resnet(block: type, blocks: list[int], classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = [_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, n in enumerate(blocks):
        width = 64 * 2**i
        for j in range(n):
            layers.append(block(cin, width, 2 if j == 0 and i > 0 else 1))
            cin = width * block.expansion
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers = [_conv_bn(cin, mid, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [_conv_bn(mid, mid, 3, stride, mid, nn.ReLU6), _conv_bn(mid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2(classes: int = 1000) -> nn.Module:
    settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
    cin = 32
    for t, c, n, s in settings:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [_conv_bn(cin, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2)]
    return nn.Sequential(*layers, nn.Linear(1280, classes))


def vgg16(classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    head = [nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(), *head, nn.Dropout(), nn.Linear(4096, classes))


def mlp(classes: int = 1000) -> nn.Module:
    """A wide dense network (78 MB of weights: the size where the default conversion once took
    12x `max`'s time): the image averaged to 3x16x16, then 768-4096-3200-classes."""
    return nn.Sequential(
        nn.AvgPool2d(14),
        nn.Flatten(),
        nn.Linear(768, 4096),
        nn.ReLU(),
        nn.Linear(4096, 3200),
        nn.ReLU(),
        nn.Linear(3200, classes),
    )


ARCHITECTURES = {
    "resnet18": lambda: resnet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: resnet(Bottleneck, [3, 4, 6, 3]),
    "mobilenet_v2": mobilenet_v2,
    "vgg16": vgg16,
    "mlp": mlp,
}


def images(split: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` Fashion-MNIST images of ``split``, seeded, as [n, 3, 224, 224] normalized float32."""
    import onnx2snn

    data = onnx2snn.load_data(f"fashion-mnist:{split}", split=split)
    idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
    x = torch.tensor(data.x[idx])
    x = F.interpolate(x, size=224, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return ((x - 0.286) / 0.353).numpy().astype(np.float32)


@torch.no_grad()
def initialize(net: nn.Module, x: np.ndarray, seed: int = 0) -> nn.Module:
    """torchvision's initialization, BatchNorm statistics from ``x``, the head re-centred; a
    network without convolutions (``mlp``) gets He's initialization in its hidden layers, so that
    its activations keep their scale without BatchNorm."""
    torch.manual_seed(seed)
    dense = not any(isinstance(m, nn.Conv2d) for m in net.modules())
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.momentum = None  # a cumulative average over the batches below
            m.reset_running_stats()
        elif isinstance(m, nn.Linear) and dense and m is not linears[-1]:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    xt = torch.tensor(x)
    net.train()
    for batch in xt.split(32):
        net(batch)
    net.eval()
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    logits = torch.cat([net(batch) for batch in xt.split(32)])
    head.bias -= logits.mean(dim=0)
    scale = 1.0 / float((logits - logits.mean(dim=0)).std())  # logits of unit spread: few near-ties
    head.weight *= scale
    head.bias *= scale
    return net


def export(net: nn.Module, path: Path) -> Path:
    """ONNX with a free batch axis (TorchScript exporter, BatchNorm kept for onnx2snn to fold)."""
    buffer = io.BytesIO()
    torch.onnx.export(
        net.eval(),
        (torch.zeros(1, 3, 224, 224),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.save(model, str(path))
    return path


def build(name: str, folder: Path, calibration: np.ndarray) -> Path:
    """The initialized architecture ``name`` as an ONNX file in ``folder`` (kept if there)."""
    path = folder / f"{name}.onnx"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        export(initialize(ARCHITECTURES[name](), calibration), path)
    return path
