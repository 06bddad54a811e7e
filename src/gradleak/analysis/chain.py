"""A model as the chain of (linear map, invertible activation) pairs that R-GAP inverts.

The chain is read off one forward pass (hooks record which leaf modules run, in order, and
their shapes) and then checked: running the chain must reproduce the model's output, so a
skip connection or an activation applied functionally inside ``forward`` is caught instead
of silently producing a wrong attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import GradleakError
from .activations import IDENTITY, Invertible, invertible, is_activation

SUPPORTED = "Linear, Conv2d (groups=1, zero padding) and strictly monotone activations (Identity, LeakyReLU, Sigmoid, Tanh)"
_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Unflatten)


@dataclass(frozen=True)
class ChainLayer:
    """One linear map and the activation after it (identity for the output layer)."""

    name: str  # module path inside the model, for messages and tables
    module: nn.Linear | nn.Conv2d
    activation: Invertible
    in_shape: tuple[int, ...]  # per-sample input as the map sees it: (C, H, W) or (n,)
    out_shape: tuple[int, ...]

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)

    @property
    def in_size(self) -> int:
        return _numel(self.in_shape)

    @property
    def out_size(self) -> int:
        return _numel(self.out_shape)

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The linear map (bias included) on a batch of flat or shaped inputs."""
        return self.module(x.reshape(x.shape[0], *self.in_shape)).reshape(x.shape[0], -1)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_layer(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise GradleakError(
                f"R-GAP cannot invert layer {name!r} (Conv2d with groups={module.groups}, "
                f"padding={module.padding!r}, padding_mode={module.padding_mode!r}); supported: {SUPPORTED}"
            )
        return
    if isinstance(module, nn.Linear) or is_activation(module) or isinstance(module, _PASS_THROUGH):
        return
    hint = " (ReLU is not invertible: a zero output hides its input)" if isinstance(module, nn.ReLU) else ""
    raise GradleakError(
        f"R-GAP cannot invert layer {name!r} ({type(module).__name__}){hint}; supported: {SUPPORTED}"
    )


def layer_chain(model: nn.Module, *, input_shape: tuple[int, ...]) -> list[ChainLayer]:
    """The model's (linear map, activation) chain, checked against its own forward pass."""
    calls: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    names = {id(m): n for n, m in model.named_modules()}
    def shape(value: object) -> tuple[int, ...]:  # recurrent layers return (output, state): not a chain link
        return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else ()

    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out: calls.append((names[id(mod)], mod, shape(inp[0]), shape(out)))
        )
        for m in model.modules()
        if not list(m.children())
    ]
    param = next(model.parameters())
    x = torch.rand((1, *input_shape), generator=torch.Generator().manual_seed(0)).to(param.device, param.dtype)
    try:
        with torch.no_grad():
            expected = model(x)
    finally:
        for h in hooks:
            h.remove()
    if any(isinstance(m, nn.Dropout) and m.training and m.p > 0 for _, m, _, _ in calls):
        raise GradleakError("R-GAP needs a deterministic model: put dropout in eval mode")
    chain: list[ChainLayer] = []
    pending: tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]] | None = None
    for name, module, in_shape, out_shape in calls:
        _check_layer(name, module)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if pending is not None:
                chain.append(ChainLayer(pending[0], pending[1], IDENTITY, pending[2], pending[3]))
            pending = (name, module, in_shape, out_shape)
        elif is_activation(module):
            if pending is None:
                raise GradleakError(f"R-GAP needs each activation to follow a linear layer; {name!r} does not")
            chain.append(ChainLayer(pending[0], pending[1], invertible(module), pending[2], pending[3]))
            pending = None
    if pending is None or not isinstance(pending[1], nn.Linear):
        raise GradleakError("R-GAP needs the model to end in a Linear output layer without an activation")
    chain.append(ChainLayer(pending[0], pending[1], IDENTITY, pending[2], pending[3]))
    _verify(chain, x, expected)
    return chain


def forward_chain(chain: list[ChainLayer], x: torch.Tensor) -> list[torch.Tensor]:
    """Flat input of every layer, then the logits: ``[x_1, ..., x_d, logits]``."""
    values = [x.reshape(x.shape[0], -1)]
    for layer in chain:
        z = layer.apply(values[-1])
        values.append(layer.activation.forward(z))
    return values


def _verify(chain: list[ChainLayer], x: torch.Tensor, expected: torch.Tensor) -> None:
    with torch.no_grad():
        got = forward_chain(chain, x)[-1]
    tol = 1e-4 * (1.0 + float(expected.abs().max()))
    if got.shape != expected.reshape(got.shape[0], -1).shape or float((got - expected.reshape(got.shape)).abs().max()) > tol:
        raise GradleakError(
            "R-GAP needs the model's forward to be a plain chain of its layers; re-running the layers "
            "in order does not reproduce its output (skip connections or functional activations?)"
        )



def layer_signals(
    chain: list[ChainLayer], x: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """For one sample: each layer's flat input ``x_i``, bias-free pre-activation and ``k_i = dL/dz_i``.

    ``loss`` maps the logits (1 x classes) to a scalar. The rank analysis and the tests use it
    to build the exact systems R-GAP meets for a known input.
    """
    with torch.enable_grad():
        h = x.reshape(1, -1).detach()
        inputs, zs = [], []
        for layer in chain:
            inputs.append(h.detach().reshape(-1))
            z = layer.apply(h)
            zs.append(z)
            h = layer.activation.forward(z)
        ks = torch.autograd.grad(loss(h), zs)
    pre = []
    for layer, z in zip(chain, zs):
        bias = layer.module.bias
        b = 0 if bias is None else bias.detach().to(z.dtype).repeat_interleave(layer.out_size // layer.out_channels)
        pre.append((z.detach() - b).reshape(-1))
    return inputs, pre, [k.reshape(-1).detach() for k in ks]
