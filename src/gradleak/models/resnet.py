"""CIFAR-style ResNet-18: the standard large victim of Inverting Gradients and its successors.

3x3 stride-1 stem (no max-pool), BasicBlocks [2, 2, 2, 2] of widths w, 2w, 4w, 8w with
strides 1, 2, 2, 2, adaptive average pool, linear classifier. ``activation="sigmoid"`` gives
the sigmoid ResNet-18 attacked by CI-Net and others (smooth activations leak more).

Adaptation: a stage only downsamples while the feature map side is at least 4, so small
inputs (8x8 digits) end at 2x2 rather than 1x1, where training-mode BatchNorm fails for a
batch of one (the common attack setting). Inputs of 16x16 and up get the usual strides; the
parameter shapes never depend on it. Init follows torchvision's ResNet (Kaiming-normal,
fan-out convs; BatchNorm weight 1, bias 0), as the Inverting Gradients code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activations import ACTIVATIONS, make_activation
from .catalog import register_model
from .options import opt
from .shapes import image_dims

BLOCKS = (2, 2, 2, 2)  # BasicBlocks per stage (ResNet-18)
STRIDES = (1, 2, 2, 2)  # nominal stride of each stage's first block


@dataclass(frozen=True)
class ResNetOptions:
    # stage widths are width, 2*width, 4*width, 8*width (64 = the usual 11M-parameter model)
    width: int = opt(64, "base width (stages w, 2w, 4w, 8w)", minimum=1)
    # nonlinearity after every BatchNorm; "sigmoid" for the CI-Net setting
    activation: str = opt("relu", "activation function", choices=tuple(ACTIVATIONS))


def _conv3x3(cin: int, cout: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, *, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = make_activation(activation)
        self.conv2 = _conv3x3(cout, cout, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, *, channels: int, side: int, num_classes: int, width: int, activation: str) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.act = make_activation(activation)
        stages = []
        cin = width
        for i, (n_blocks, stride) in enumerate(zip(BLOCKS, STRIDES)):
            cout = width * 2**i
            if side < 4:
                stride = 1  # keep >= 2x2 maps (see module docstring)
            side = (side - 1) // stride + 1
            blocks = [BasicBlock(cin, cout, stride=stride, activation=activation)]
            blocks += [BasicBlock(cout, cout, stride=1, activation=activation) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        for stage in self.layers:
            x = stage(x)
        return self.fc(self.pool(x).flatten(1))


@register_model(
    "resnet18", options_type=ResNetOptions, description="CIFAR-style ResNet-18 (BatchNorm; relu or sigmoid)"
)
def build_resnet18(*, input_shape: tuple[int, ...], num_classes: int, options: ResNetOptions) -> nn.Module:
    c, h, w = image_dims("resnet18", input_shape, num_classes)
    return ResNet(
        channels=c, side=min(h, w), num_classes=num_classes, width=options.width, activation=options.activation
    )
