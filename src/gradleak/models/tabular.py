"""Victim models for health records: logistic regression and recurrent nets over time steps.

The MIMIC-III benchmark's standard baselines are logistic regression and an LSTM over the 48
hourly steps; the medical replication study attacked an MLP on the flattened 48 x 76 record
(``mlp``, registered in :mod:`gradleak.models.mlp`). The recurrent models read ``B x T x F``
records, summarise them with the last hidden state, and end in an ``nn.Linear`` (label
recovery reads it). No dropout: the client's update must be reproducible by the attacker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ShapeError
from .catalog import register_model
from .options import opt
from .shapes import check_classes, flat_size


@dataclass(frozen=True)
class LogRegOptions:
    # bias term of the linear layer (as in the benchmark's logistic regression)
    bias: bool = opt(True, "use a bias term")


class LogisticRegression(nn.Module):
    def __init__(self, *, features: int, num_classes: int, bias: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(features, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@register_model("logreg", options_type=LogRegOptions, description="Logistic regression on the flattened record")
def build_logreg(*, input_shape: tuple[int, ...], num_classes: int, options: LogRegOptions) -> nn.Module:
    return LogisticRegression(features=flat_size("logreg", input_shape, num_classes), num_classes=num_classes,
                              bias=options.bias)


@dataclass(frozen=True)
class RecurrentOptions:
    # hidden units per layer (the benchmark's LSTM used 16-256; 32 keeps attacks fast on CPU)
    hidden: int = opt(32, "hidden units per recurrent layer", minimum=1)
    # stacked recurrent layers (the benchmark's best in-hospital-mortality LSTM had 2)
    layers: int = opt(1, "stacked recurrent layers", minimum=1)


class Recurrent(nn.Module):
    """GRU/LSTM over the time axis, classifier on the last step's hidden state."""

    def __init__(self, *, cell: type[nn.RNNBase], features: int, num_classes: int, options: RecurrentOptions) -> None:
        super().__init__()
        self.rnn = cell(features, options.hidden, num_layers=options.layers, batch_first=True)
        self.fc = nn.Linear(options.hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _sequence_dims(model: str, input_shape: tuple[int, ...], num_classes: int) -> int:
    if len(input_shape) != 2 or any(int(v) < 1 for v in input_shape):
        raise ShapeError(f"model {model!r} needs time-series records (T, F), got input shape {tuple(input_shape)}")
    check_classes(model, num_classes)
    return int(input_shape[1])


@register_model("gru", options_type=RecurrentOptions, description="GRU over the time steps of a record")
def build_gru(*, input_shape: tuple[int, ...], num_classes: int, options: RecurrentOptions) -> nn.Module:
    return Recurrent(cell=nn.GRU, features=_sequence_dims("gru", input_shape, num_classes),
                     num_classes=num_classes, options=options)


@register_model("lstm", options_type=RecurrentOptions, description="LSTM over the time steps of a record")
def build_lstm(*, input_shape: tuple[int, ...], num_classes: int, options: RecurrentOptions) -> nn.Module:
    return Recurrent(cell=nn.LSTM, features=_sequence_dims("lstm", input_shape, num_classes),
                     num_classes=num_classes, options=options)
