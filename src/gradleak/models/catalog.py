"""The model registry and the functions that build models from names or specs.

A model module declares ``build(*, input_shape, num_classes, options) -> nn.Module`` and an
options dataclass, and registers them with :func:`register_model`; the registered factory
takes the options as plain keyword arguments (the JSON-able form stored in observations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..registry import Registry
from .base import ModelSpec
from .options import describe_options, options_to_json, parse_options

Factory = Callable[..., nn.Module]

#: name -> ``factory(*, input_shape, num_classes, **options) -> nn.Module``
MODELS: Registry[Factory] = Registry("model")


@dataclass(frozen=True)
class NoOptions:
    """Options of a model registered without any: every option given is an error."""


def register_model(
    name: str, *, options_type: type | None = None, description: str = ""
) -> Callable[[Callable[..., nn.Module]], Factory]:
    """Register ``build(*, input_shape, num_classes)`` under ``name``.

    With ``options_type`` (a dataclass, fields declared with :func:`gradleak.models.options.opt`)
    ``build`` also receives ``options=``, parsed and validated from ``--model-option KEY=VALUE``.
    ``description`` defaults to the first line of ``build``'s docstring.
    """

    def decorator(build: Callable[..., nn.Module]) -> Factory:
        parsed_type = options_type or NoOptions

        def factory(*, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
            parsed = parse_options(name, parsed_type, options)
            if options_type is None:
                return build(input_shape=tuple(input_shape), num_classes=int(num_classes))
            return build(input_shape=tuple(input_shape), num_classes=int(num_classes), options=parsed)

        factory.__name__ = f"build_{name}"
        factory.__doc__ = build.__doc__
        factory.options_type = parsed_type  # type: ignore[attr-defined]
        MODELS.register(name, description=description)(factory)
        return factory

    return decorator


def create_model(spec: ModelSpec) -> nn.Module:
    """Rebuild the architecture an observation names (weights travel separately)."""
    return MODELS.get(spec.name)(
        input_shape=spec.input_shape, num_classes=spec.num_classes, **spec.options
    )


def build_model(name: str, *, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    return MODELS.get(name)(input_shape=input_shape, num_classes=num_classes, **options)


def complete_options(name: str, **options: Any) -> dict[str, Any]:
    """All options of ``name`` with defaults filled in: store this, so a saved observation
    still rebuilds the same model if a default changes later."""
    options_type = MODELS.get(name).options_type  # type: ignore[attr-defined]
    return options_to_json(parse_options(name, options_type, options))


def complete_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` with every option spelled out (validated)."""
    return ModelSpec(
        name=spec.name,
        input_shape=tuple(spec.input_shape),
        num_classes=spec.num_classes,
        options=complete_options(spec.name, **spec.options),
    )


def list_models() -> list[dict[str, Any]]:
    """One dict per model for ``gradleak models``: name, description, options with defaults
    (``options``) and their help and choices (``option_details``)."""
    out = []
    for name in MODELS.names():
        details = describe_options(MODELS.get(name).options_type)  # type: ignore[attr-defined]
        out.append(
            {
                "name": name,
                "description": MODELS.describe(name),
                "options": {k: v["default"] for k, v in details.items()},
                "option_details": details,
            }
        )
    return out
