"""Real architectures (small widths, random weights), exported by PyTorch: each converted model
passes the ONNX checker, runs in plain onnxruntime and agrees with its ANN at T=512."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx2snn
from tests.helpers import export_torch, run_onnx


def nets():
    import torch
    from torch import nn

    def conv_bn(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)

    class Basic(nn.Module):  # ResNet basic block, 1x1 downsample shortcut
        def __init__(self, cin, cout, s):
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, cout, s=s), conv_bn(cout, cout, act=None))
            self.short = conv_bn(cin, cout, 1, s, act=None) if s != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    class InvertedResidual(nn.Module):  # MobileNetV2: expand, depthwise, linear bottleneck
        def __init__(self, cin, cout, s, expand=4):
            super().__init__()
            mid = cin * expand
            self.use_res = s == 1 and cin == cout
            self.body = nn.Sequential(
                conv_bn(cin, mid, 1, act=nn.ReLU6),
                conv_bn(mid, mid, 3, s, mid, nn.ReLU6),
                conv_bn(mid, cout, 1, act=None),
            )

        def forward(self, x):
            return x + self.body(x) if self.use_res else self.body(x)

    class Fire(nn.Module):  # SqueezeNet: squeeze, then two expands concatenated
        def __init__(self, cin, squeeze, expand):
            super().__init__()
            self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
            self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
            self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

        def forward(self, x):
            s = self.squeeze(x)
            return torch.cat([self.e1(s), self.e3(s)], 1)

    class Dense(nn.Module):  # DenseNet layer: concatenate the new features to the input
        def __init__(self, cin, growth):
            super().__init__()
            self.f = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, growth, 3, padding=1))

        def forward(self, x):
            return torch.cat([x, self.f(x)], 1)

    gap = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return {
        "resnet18_style": nn.Sequential(
            conv_bn(3, 8, 3, 1),
            nn.MaxPool2d(3, 2, 1),
            Basic(8, 8, 1),
            Basic(8, 16, 2),
            Basic(16, 32, 2),
            *gap,
            nn.Linear(32, 10),
        ),
        "vgg_style": nn.Sequential(
            conv_bn(3, 8),
            conv_bn(8, 8),
            nn.MaxPool2d(2),
            conv_bn(8, 16),
            conv_bn(16, 16),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 32),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(32, 10),
        ),
        "mobilenetv2_style": nn.Sequential(
            conv_bn(3, 8, s=2, act=nn.ReLU6),
            InvertedResidual(8, 8, 1),
            InvertedResidual(8, 16, 2),
            InvertedResidual(16, 16, 1),
            conv_bn(16, 32, 1, act=nn.ReLU6),
            *gap,
            nn.Linear(32, 10),
        ),
        "squeezenet_style": nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            Fire(16, 4, 8),
            Fire(16, 4, 8),
            nn.Conv2d(16, 10, 1),
            nn.ReLU(),
            *gap,
        ),
        "densenet_style": nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            Dense(8, 4),
            Dense(12, 4),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AvgPool2d(2),
            *gap,
            nn.Linear(16, 10),
        ),
        "mlp": nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
        ),
        "conv1d_transpose_resize": nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 4, 2, 2),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(4, 4, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(2),
            nn.Conv1d(4, 6, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(6 * 256, 10),
        ),
    }


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (300, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("name", list(nets()) if __import__("importlib").util.find_spec("torch") else [])
def test_architecture_converts_and_agrees(name, images):
    import torch

    torch.manual_seed(0)
    net = nets()[name].eval()
    with torch.no_grad():  # give BatchNorm statistics that are not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.3)
    model = export_torch(net, torch.tensor(images[:1]), fold=False)
    snn = onnx2snn.convert(
        model, images[:200], "max", per_channel=False, corrections=()
    )  # per layer: a per-neuron max from 200 samples clips
    onnx.checker.check_model(snn.proto, full_check=True)
    ort.InferenceSession(snn.proto.SerializeToString(), providers=["CPUExecutionProvider"])  # plain onnxruntime
    x = images[200:]
    ann = run_onnx(model, {"input": x})[0]
    out = onnx2snn.SNNSession(snn).run(x, 512)
    error = np.abs(out - ann).mean() / np.abs(ann).mean()
    agreement = (out.argmax(1) == ann.argmax(1)).mean()
    assert agreement >= 0.99 and error < 0.05, (agreement, error)
