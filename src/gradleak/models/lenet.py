"""The LeNet of Deep Leakage from Gradients (Zhu et al., 2019).

Three stride-2/2/1 5x5 convolutions with sigmoids and one linear layer. Smooth activations
and DLG's wide uniform(-0.5, 0.5) initialisation are why DLG/iDLG reconstruct so well on it;
keep ``init="uniform"`` to reproduce those results. ``hidden_fc > 0`` inserts a fully connected
layer + ReLU before the classifier (a CNN with an FC head, the victim of deep ``spear``); 0 keeps
DLG's architecture, parameter names and initial weights unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .catalog import register_model
from .options import opt
from .shapes import conv_out, image_dims



@dataclass(frozen=True)
class LeNetOptions:
    # "uniform": every weight and bias ~ U(-0.5, 0.5) as in DLG; "default": PyTorch's init
    init: str = opt(
        "uniform", "weight init: DLG's U(-0.5,0.5) or PyTorch default", choices=("uniform", "default")
    )
    # units of a fully connected + ReLU layer between the convolutions and the classifier; 0 = none (DLG)
    hidden_fc: int = opt(0, "units of an FC+ReLU layer before the classifier (0: none, DLG's LeNet)", minimum=0)


class LeNet(nn.Module):
    def __init__(self, *, channels: int, flat: int, num_classes: int, hidden_fc: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        # the optional FC head is created after ``fc`` so that, without it, creation order (and
        # hence the weights drawn from a seeded RNG) is exactly DLG's
        self.fc = nn.Linear(hidden_fc or flat, num_classes)
        self.hidden = nn.Sequential(nn.Linear(flat, hidden_fc), nn.ReLU()) if hidden_fc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x).flatten(1)
        return self.fc(features if self.hidden is None else self.hidden(features))


def _uniform_init(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)


def _default_init(model: nn.Module) -> None:
    """PyTorch's own init already ran in the constructors."""


INITS = {"uniform": _uniform_init, "default": _default_init}


@register_model("lenet", options_type=LeNetOptions, description="DLG's sigmoid LeNet (Zhu et al. 2019)")
def build_lenet(*, input_shape: tuple[int, ...], num_classes: int, options: LeNetOptions) -> nn.Module:
    c, h, w = image_dims("lenet", input_shape, num_classes)
    for _ in range(2):  # the two stride-2 convs; the third keeps the size
        h, w = conv_out(h, kernel=5, stride=2, padding=2), conv_out(w, kernel=5, stride=2, padding=2)
    model = LeNet(channels=c, flat=12 * h * w, num_classes=num_classes, hidden_fc=options.hidden_fc)
    INITS[options.init](model)
    return model
