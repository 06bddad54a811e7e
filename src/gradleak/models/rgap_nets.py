"""The bias-free LeakyReLU networks of R-GAP (Zhu & Blaschko, ICLR 2021).

Layer tables follow the authors' repository (JunyiZhu-AI/R-GAP, ``models/CNN6.py``,
``CNN6d.py``, ``FCN3.py``). R-GAP inverts layer by layer, so these nets have no bias and an
invertible LeakyReLU(0.2); CNN6 is full-rank for the attack, CNN6-d (second conv narrowed to
20 channels) is deliberately rank-deficient. Differences from the paper, on purpose:

* the output is ``Linear(flat, num_classes, bias=False)`` logits instead of one sigmoid
  logit; ``num_classes=1`` gives the paper's logistic setting (the loss supplies the sigmoid);
* the flatten size is computed from the input (the paper's 3200 is for 3x32x32), and the
  first layer takes any channel count;
* FCN3's output gets no activation (the repository applies a LeakyReLU to the logit).

Weights use PyTorch's default init, as the authors do (``torch.manual_seed`` then construct).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import torch
from torch import nn

from .catalog import register_model
from .shapes import conv_out, flat_size, image_dims, require_positive

SLOPE = 0.2  # LeakyReLU negative slope used throughout R-GAP

#: (out_channels, kernel, stride, padding) of CNN6's six convolutions.
CNN6_CONVS: tuple[tuple[int, int, int, int], ...] = (
    (12, 4, 2, 2),
    (36, 3, 2, 1),
    (36, 3, 1, 1),
    (36, 3, 1, 1),
    (64, 3, 2, 1),
    (128, 3, 1, 1),
)
#: CNN6-d: CNN6 with the second convolution narrowed to 20 output channels.
CNN6D_CONVS = (CNN6_CONVS[0], (20, 3, 2, 1)) + CNN6_CONVS[2:]
#: FCN3's two hidden widths (the third layer is the classifier).
FCN3_HIDDEN = (1000, 100)


@dataclass(frozen=True)
class RGapOptions:
    """The R-GAP nets are fixed architectures: no options."""


class RGapNet(nn.Module):
    """Hidden blocks ``body[i].layer`` -> ``body[i].act`` (LeakyReLU), then a bias-free ``head``.

    ``input_shapes[i]`` is the per-sample shape entering layer ``i`` (the head last, flat):
    what R-GAP needs to unroll convolutions into matrices.
    """

    def __init__(self, layers: list[nn.Module], head: nn.Linear, input_shapes: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.body = nn.ModuleList(
            nn.Sequential(OrderedDict([("layer", layer), ("act", nn.LeakyReLU(SLOPE))]))
            for layer in layers
        )
        self.head = head
        self.input_shapes = input_shapes

    def layers(self) -> list[tuple[nn.Module, nn.Module | None]]:
        """(layer, activation) pairs in forward order; the head has no activation."""
        return [(b.layer, b.act) for b in self.body] + [(self.head, None)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.body:
            if isinstance(block.layer, nn.Linear):
                x = x.flatten(1)
            x = block(x)
        return self.head(x.flatten(1))


def _cnn(name: str, convs, input_shape: tuple[int, ...], num_classes: int) -> RGapNet:
    c, h, w = image_dims(name, input_shape, num_classes)
    layers: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    for out, k, s, p in convs:
        shapes.append((c, h, w))
        layers.append(nn.Conv2d(c, out, kernel_size=k, stride=s, padding=p, bias=False))
        c, h, w = out, conv_out(h, kernel=k, stride=s, padding=p), conv_out(w, kernel=k, stride=s, padding=p)
        require_positive(name, "a feature map side", min(h, w), input_shape)
    shapes.append((c * h * w,))
    return RGapNet(layers, nn.Linear(c * h * w, num_classes, bias=False), shapes)


@register_model(
    "cnn6", options_type=RGapOptions, description="R-GAP's bias-free LeakyReLU CNN6 (Zhu & Blaschko 2021)"
)
def build_cnn6(*, input_shape: tuple[int, ...], num_classes: int, options: RGapOptions) -> nn.Module:
    return _cnn("cnn6", CNN6_CONVS, input_shape, num_classes)


@register_model(
    "cnn6d", options_type=RGapOptions, description="R-GAP's rank-deficient CNN6-d (2nd conv 20 channels)"
)
def build_cnn6d(*, input_shape: tuple[int, ...], num_classes: int, options: RGapOptions) -> nn.Module:
    return _cnn("cnn6d", CNN6D_CONVS, input_shape, num_classes)


@register_model(
    "fcn3", options_type=RGapOptions, description="R-GAP's bias-free 3-layer LeakyReLU MLP (FCN3)"
)
def build_fcn3(*, input_shape: tuple[int, ...], num_classes: int, options: RGapOptions) -> nn.Module:
    sizes = (flat_size("fcn3", input_shape, num_classes),) + FCN3_HIDDEN
    layers = [nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:])]
    shapes = [(n,) for n in sizes]
    return RGapNet(layers, nn.Linear(sizes[-1], num_classes, bias=False), shapes)
