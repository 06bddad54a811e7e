"""The ConvNet of Inverting Gradients (Geiping et al., NeurIPS 2020).

Eight 3x3 conv + BatchNorm + ReLU layers of widths w, 2w, 2w, 4w, 4w, 4w, max-pool(3),
4w, 4w, max-pool(3), then a linear classifier (layout as ``inversefed/nn/models.py``
``ConvNet``). The paper uses ``width=64``: about 2.9M parameters at any resolution, and
~1.9 GMAC per forward of one 3x32x32 image (7.5 GMAC at 64x64); an attack needs a forward and
a double backward per iteration, so thousands of iterations take many minutes on CPU. Cost
grows with width squared: ``width=16`` is ~16x cheaper, fine for smoke tests.

Adaptation: the classifier input is computed from the resolution (3x3x4w at 28x28 or 32x32);
a pool whose input side is below 3 is skipped (an identity), so 8x8 inputs still work.
Parameter names do not depend on that choice. Init is PyTorch's default, as in the original.
``hidden_fc > 0`` puts a fully connected layer + ReLU (``fc``, ``fc_relu``) before the classifier:
a CNN with an FC head, the victim of deep ``spear``; 0 keeps the original exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .catalog import register_model
from .options import opt
from .shapes import conv_out, image_dims

#: channel multipliers of the eight convolutions; "pool" marks a MaxPool2d(3).
LAYOUT: tuple[int | str, ...] = (1, 2, 2, 4, 4, 4, "pool", 4, 4, "pool")


@dataclass(frozen=True)
class ConvNetOptions:
    # base width w; the paper's 64 is ~2.9M parameters, try 16 for quick experiments
    width: int = opt(64, "base channel width w (widths w,2w,2w,4w,...,4w)", minimum=1)
    # units of a fully connected + ReLU layer between the convolutions and the classifier; 0 = none
    hidden_fc: int = opt(0, "units of an FC+ReLU layer before the classifier (0: none, the original)", minimum=0)


class ConvNet(nn.Module):
    def __init__(self, layers: "OrderedDict[str, nn.Module]") -> None:
        super().__init__()
        self.model = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model(
    "convnet",
    options_type=ConvNetOptions,
    description="Inverting Gradients' 8-layer BatchNorm ConvNet (Geiping et al. 2020)",
)
def build_convnet(*, input_shape: tuple[int, ...], num_classes: int, options: ConvNetOptions) -> nn.Module:
    channels, h, w = image_dims("convnet", input_shape, num_classes)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    n_conv = n_pool = 0
    for item in LAYOUT:
        if item == "pool":
            if min(h, w) >= 3:
                layers[f"pool{n_pool}"] = nn.MaxPool2d(3)
                h, w = conv_out(h, kernel=3, stride=3), conv_out(w, kernel=3, stride=3)
            else:
                layers[f"pool{n_pool}"] = nn.Identity()
            n_pool += 1
            continue
        out = int(item) * options.width
        layers[f"conv{n_conv}"] = nn.Conv2d(channels, out, kernel_size=3, padding=1)
        layers[f"bn{n_conv}"] = nn.BatchNorm2d(out)
        layers[f"relu{n_conv}"] = nn.ReLU()
        channels, n_conv = out, n_conv + 1
    layers["flatten"] = nn.Flatten()
    flat = channels * h * w
    if options.hidden_fc:
        layers["fc"] = nn.Linear(flat, options.hidden_fc)
        layers["fc_relu"] = nn.ReLU()
        flat = options.hidden_fc
    layers["linear"] = nn.Linear(flat, num_classes)
    return ConvNet(layers)
