"""Attack your own model and update, with no registry or data set of ours involved.

A hospital engineer already has an ``nn.Module``, the weights the server sent and the update a
client returned. :func:`observe` turns those into an :class:`~gradleak.observation.Observation`
(what the server sees), :func:`attack` runs any registered attack on it::

    from gradleak import api
    obs = api.observe(model=net, gradients={n: p.grad for n, p in net.named_parameters()},
                      input_shape=(3, 32, 32), batch_size=8)
    rec = api.attack(obs, attack="ig", seed=0)          # rec.inputs: the reconstructed batch

The update may be a gradient (FedSGD), a weight difference or the client's new weights after
``local_epochs`` epochs of SGD at ``lr`` (FedAvg), or an Opacus DP-SGD step: names prefixed by
Opacus (``_module.``) or DistributedDataParallel (``module.``) are matched to the plain model's,
and ``defense="dpsgd:1.0"`` tells an adaptive attacker what the client did. The client's loss is
taken to be the mean cross-entropy over the batch, which is what the attacks simulate.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .errors import GradleakError
from .fl.protocol import Protocol
from .models.base import ModelSpec
from .observation import Observation

UpdateLike = Mapping[str, torch.Tensor] | Sequence[torch.Tensor]
WRAPPER_PREFIXES = ("_module.", "module.")  # Opacus GradSampleModule, DistributedDataParallel
_TEMPLATES: dict[str, nn.Module] = {}  # registry name -> the user's module (architecture only)


def observe(
    *,
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    gradients: UpdateLike | None = None,
    weight_delta: UpdateLike | None = None,
    new_parameters: UpdateLike | None = None,
    parameters: UpdateLike | None = None,
    lr: float | None = None,
    local_epochs: int = 1,
    local_batch_size: int | None = None,
    local_shuffle: bool = False,
    num_classes: int | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    labels: torch.Tensor | None = None,
    train_mode: bool = False,
    defense: str | None = None,
    name: str | None = None,
) -> Observation:
    """The server's view of one client update on ``model``.

    Give exactly one of ``gradients`` (FedSGD), ``weight_delta`` or ``new_parameters`` (FedAvg:
    then ``lr`` and the local schedule are required, as the attacker replays it). ``parameters``:
    the weights the server sent (``local_shuffle``: the client shuffled every epoch, order unknown) (default: ``model``'s current ones; pass them if the model has
    trained since). Updates are dicts by parameter name or lists in ``model.parameters()`` order.
    ``num_classes`` defaults to the model's output width; ``labels`` only if the client shares them.
    """
    model = _unwrap(model)
    shape = _shape(input_shape)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GradleakError(f"batch_size must be a positive integer, got {batch_size!r}")
    given = {k: v for k, v in (("gradients", gradients), ("weight_delta", weight_delta),
                                ("new_parameters", new_parameters)) if v is not None}
    if len(given) != 1:
        raise GradleakError("give exactly one of gradients=, weight_delta= or new_parameters=, "
                            f"got {', '.join(given) or 'none'}")
    kind, raw = next(iter(given.items()))
    names = [n for n, _ in model.named_parameters()]
    sent = _by_name(parameters, names, what="parameters") if parameters is not None else {
        n: p.detach().clone() for n, p in model.named_parameters()}
    update = _by_name(raw, names, what=kind)
    if kind == "new_parameters":
        update = {n: update[n] - sent[n] for n in names}
    if kind == "gradients":
        protocol = Protocol(name="fedsgd")
    else:
        if lr is None:
            raise GradleakError(f"{kind}= needs lr= (the client's local SGD learning rate)")
        protocol = Protocol(name="fedavg", lr=float(lr), local_epochs=local_epochs, local_batch_size=local_batch_size,
                            shuffle=local_shuffle)
    lo, hi = (float(v) for v in data_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise GradleakError(f"data_range must be two finite numbers, low < high, got {data_range!r}")
    classes = num_classes if num_classes is not None else _output_width(model, shape)
    spec = ModelSpec(name=_register(model, name), input_shape=shape, num_classes=int(classes))
    described = None
    if defense is not None:
        from .defenses.base import parse_defense

        described = parse_defense(defense).describe()
    return Observation(
        model=spec, parameters=sent, buffers={n: b.detach().clone() for n, b in model.named_buffers()},
        train_mode=bool(train_mode), protocol=protocol, update=update, num_samples=batch_size,
        labels=None if labels is None else torch.as_tensor(labels).long().reshape(-1), defense=described,
        data={"dataset": "own", "kind": "image" if len(shape) == 3 else "vector", "min": lo, "max": hi},
    )


def attack(observation: Observation, *, attack: str = "ig", seed: int = 0, device: str = "cpu",
           progress: bool = False, adaptive: bool = True, **options: Any):
    """Run the registered attack ``attack`` (options as in ``gradleak attacks``) on ``observation``.

    Against a defended observation the attack adapts to the recorded defense (the defense's
    overrides on top of ``options``) unless ``adaptive=False``; ``rec.summary()`` does not say
    which, so keep ``adaptive`` with your results.

    Returns a :class:`~gradleak.attacks.base.Reconstruction`: ``inputs``, ``labels``, the
    attacker's own ``gradient_loss`` and ``iterations_used``. Compare with your data yourself, or
    use :func:`gradleak.runner.evaluate` with a :class:`~gradleak.observation.GroundTruth`.
    """
    from .attacks import create_attack
    from .defenses.adaptive import observed_defense, plan_attack
    from .runner import run_attack

    from .attacks.base import for_victim

    create_attack(attack, **options)  # the user's options are valid on their own
    options = for_victim(attack, options, observation)  # e.g. the record attack's sequence mode on a GRU
    plan = plan_attack(attack, options=options, defense=observed_defense(observation.defense), adaptive=adaptive)
    return run_attack(observation, attack=create_attack(attack, **plan.options), seed=seed, device=device,
                      show_progress=progress)


# ---------------------------------------------------------------------- helpers
def _unwrap(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise GradleakError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    while hasattr(model, "_module") and isinstance(model._module, nn.Module):  # Opacus GradSampleModule
        model = model._module
    while type(model).__name__ == "DistributedDataParallel" and isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def _shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise GradleakError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise GradleakError(f"input_shape must be a sequence of positive integers, got {input_shape!r}")
    return shape


def _strip(name: str, names: set[str]) -> str:
    for prefix in WRAPPER_PREFIXES:
        if name not in names and name.startswith(prefix):
            name = name[len(prefix):]
    return name


def _by_name(values: UpdateLike, names: list[str], *, what: str) -> dict[str, torch.Tensor]:
    """Tensors keyed by the plain model's parameter names, checked for completeness and finiteness."""
    if isinstance(values, Mapping):
        keyed = {_strip(str(k), set(names)): v for k, v in values.items()}
    elif isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        if len(values) != len(names):
            raise GradleakError(f"{what} has {len(values)} tensors but the model has {len(names)} parameters")
        keyed = dict(zip(names, values))
    else:
        raise GradleakError(f"{what} must be a dict of tensors by parameter name or a list in parameters() order")
    missing, extra = sorted(set(names) - set(keyed)), sorted(set(keyed) - set(names))
    if missing or extra:
        raise GradleakError(f"{what} does not match the model's parameters: missing {missing[:3]}, unexpected {extra[:3]}")
    out = {}
    for n in names:
        t = keyed[n]
        if t is None:
            raise GradleakError(f"{what}[{n!r}] is None (no gradient: was backward() called?)")
        t = torch.as_tensor(t).detach().cpu()
        if not t.is_floating_point():
            raise GradleakError(f"{what}[{n!r}] has dtype {t.dtype}; a floating-point tensor is expected")
        out[n] = t.float().clone()
    return out


def _output_width(model: nn.Module, shape: tuple[int, ...]) -> int:
    template = copy.deepcopy(model).eval()
    with torch.no_grad():
        out = template(torch.zeros((2, *shape)))
    if out.ndim != 2:
        raise GradleakError(f"the model's output has shape {tuple(out.shape)} for input {shape}; "
                            "a (batch, classes) output is expected")
    return int(out.shape[1])


def _register(model: nn.Module, name: str | None) -> str:
    """Register ``model``'s architecture (a deep copy) so observations can rebuild it by name.

    The name is the class name unless given; a different module under a taken name gets a suffix.
    Saved observations of such a model load again in a process that made the same call.
    """
    from .models.catalog import MODELS, NoOptions

    base = name or f"own-{type(model).__name__.lower()}"
    template = _without_hooks(copy.deepcopy(model).cpu())
    candidate, k = base, 1
    while candidate in MODELS:
        known = _TEMPLATES.get(candidate)
        if known is not None and _same_architecture(known, template):
            _TEMPLATES[candidate] = template
            return candidate
        k += 1
        candidate = f"{base}-{k}"

    def build(*, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
        if options:
            raise GradleakError(f"model {candidate!r} (your own module) takes no options, got {sorted(options)}")
        return copy.deepcopy(_TEMPLATES[candidate])

    build.options_type = NoOptions  # type: ignore[attr-defined]
    _TEMPLATES[candidate] = template
    MODELS.register(candidate, description=f"your {type(model).__name__} (registered by gradleak.api.observe)")(build)
    return candidate


def _without_hooks(model: nn.Module) -> nn.Module:
    """The architecture without hooks a wrapper left on it (Opacus' per-sample gradient capture
    would run, and fail, inside the attack's differentiable replay of the client)."""
    for module in model.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            getattr(module, hooks, {}).clear()
        for attribute in ("activations", "max_batch_len"):
            if attribute in module.__dict__:
                delattr(module, attribute)
    return model


def _same_architecture(a: nn.Module, b: nn.Module) -> bool:
    shapes = lambda m: [(n, tuple(t.shape)) for n, t in m.state_dict().items()]  # noqa: E731
    return type(a) is type(b) and shapes(a) == shapes(b)
