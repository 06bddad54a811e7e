"""Read what enters one module of a model during a forward pass (features at a layer).

Used where the input of an inner layer matters on its own: the features deep ``spear``
recovers, the feature term of a feature-matched inversion, and the evaluator's true features.
The tap keeps the graph (differentiable) and records only the first call of each forward
that runs while it is open; a client's local training runs several, the first is at the
weights the server sent.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..errors import GradleakError


class Tap:
    """Holds the input of the tapped module from the first forward since it was opened."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def take(self) -> torch.Tensor:
        """The captured input, flattened per sample (B x n); the tap is emptied for the next forward."""
        if self.value is None:
            raise RuntimeError("the tapped module did not run")
        value, self.value = self.value, None
        return value.flatten(1)


@contextmanager
def tap_input(model: nn.Module, name: str) -> Iterator[Tap]:
    """Record the input of ``model``'s submodule ``name`` while the context is open."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise GradleakError(f"model has no module {name!r}")
    tap = Tap()

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if tap.value is None:
            tap.value = args[0]

    handle = modules[name].register_forward_pre_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


def layer_inputs(model: nn.Module, inputs: torch.Tensor, name: str) -> torch.Tensor:
    """The input of submodule ``name`` for a batch (one forward, no graph), B x n."""
    with tap_input(model, name) as tap, torch.no_grad():
        model(inputs)
        return tap.take()
