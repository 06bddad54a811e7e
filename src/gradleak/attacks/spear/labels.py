"""Per-sample labels once the inputs are known, from the output layer in closed form.

For mean cross-entropy the output layer's weight gradient is ``dW = (P - Y)^T H / B``, with
``H`` the inputs of that layer and ``P`` the softmax, both computable from the recovered batch.
So ``Y^T = (P^T H - B dW) H^+``: exact one-hot rows when ``H`` has full row rank. When what was
recovered is the input of a deeper layer (``features_at``), the model runs from there: the
layer's input is replaced by the recovered features (valid when nothing bypasses that layer,
as in every registered model that has one).
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.base import classifier_layer
from ...observation import Observation


def labels_from_inputs(observation: Observation, *, model: nn.Module, inputs: torch.Tensor,
                       gradients: dict[str, torch.Tensor], features_at: str | None = None) -> torch.Tensor | None:
    """Labels solved from the output layer, or None when they are not pinned down; ``inputs``
    are the model's inputs, or (``features_at``: a module name) that module's inputs."""
    head = classifier_layer(model)
    if head.weight.shape[0] < 2:
        return None
    names = {id(p): n for n, p in model.named_parameters()}
    b = inputs.shape[0]
    dtype = head.weight.dtype
    captured: list[torch.Tensor] = []
    handles = [head.register_forward_hook(lambda _m, inp, _o: captured.append(inp[0]))]
    if features_at is not None:  # a dummy batch in, the recovered features substituted at the layer
        module = dict(model.named_modules())[features_at]
        features = inputs.to(dtype)
        handles.append(module.register_forward_pre_hook(lambda _m, _i: (features,)))
        inputs = torch.zeros((b, *observation.input_shape), dtype=dtype)
    try:
        with torch.no_grad():
            logits = model(inputs.to(dtype))
    finally:
        for handle in handles:
            handle.remove()
    h = captured[0].flatten(1).double()
    p = torch.softmax(logits.double(), dim=1)
    grad_w = gradients[names[id(head.weight)]].double()
    if torch.linalg.matrix_rank(h) < b:
        return None
    y = torch.linalg.lstsq(h.T, (p.T @ h - b * grad_w).T).solution  # B x C
    if bool((y.max(1).values < 0.5).any()):
        return None
    return y.argmax(1)
