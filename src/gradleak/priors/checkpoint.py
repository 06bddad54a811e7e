"""Prior checkpoints: ``prior.json`` (spec + provenance) and ``generator.safetensors`` (weights).

Any generator saved in this format can be loaded, so users can bring their own: the JSON
names a registered architecture and its size, the safetensors file holds exactly that
architecture's state dict. Nothing is unpickled; every mismatch is a one-line
:class:`~gradleak.errors.GradleakError` naming what was expected and what was found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import GradleakError
from .generators import Generator, GeneratorSpec, build_generator

FORMAT = "gradleak-prior/1"
META_FILE = "prior.json"
WEIGHTS_FILE = "generator.safetensors"


def save_prior(directory: str | Path, *, generator: Generator, info: dict[str, Any] | None = None) -> None:
    """Write the checkpoint into ``directory`` (use an atomic directory for user-facing output)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    save_file(state, directory / WEIGHTS_FILE)
    meta = {"format": FORMAT, "generator": generator.spec.to_json(), "info": info or {}}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_prior_info(directory: str | Path) -> tuple[GeneratorSpec, dict[str, Any]]:
    """The spec and provenance of a checkpoint, without reading its weights."""
    directory = Path(directory)
    path = directory / META_FILE
    if not directory.is_dir():
        raise GradleakError(f"prior directory {directory} does not exist (train one with `gradleak prior train`)")
    if not path.is_file():
        raise GradleakError(f"prior directory {directory} has no {META_FILE}; not a gradleak prior")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise GradleakError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GradleakError(f"{path} is not a {FORMAT} file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if not isinstance(meta.get("generator"), dict):
        raise GradleakError(f"{path} has no 'generator' spec object")
    info = meta.get("info", {})
    return GeneratorSpec.from_json(meta["generator"]), info if isinstance(info, dict) else {}


def load_prior(
    directory: str | Path, *, expected_shape: tuple[int, ...] | None = None, device: str | torch.device = "cpu"
) -> tuple[Generator, dict[str, Any]]:
    """Rebuild the generator (eval mode, frozen) and check it produces ``expected_shape`` images."""
    spec, info = read_prior_info(directory)
    if expected_shape is not None and tuple(spec.shape) != tuple(expected_shape):
        raise GradleakError(
            f"prior {directory} generates images of shape {'x'.join(map(str, spec.shape))} but the observation's "
            f"inputs are {'x'.join(map(str, expected_shape))} (resolution and channels must match)"
        )
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise GradleakError(f"prior directory {directory} has no {WEIGHTS_FILE}")
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise GradleakError(f"cannot read {path}: {exc}") from None
    generator = build_generator(spec)
    expected = generator.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise GradleakError(f"{path} does not fit a {spec.arch} generator: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise GradleakError(f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise GradleakError(f"{path}: tensor {key} contains NaN or Inf")
    generator.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    generator.eval().requires_grad_(False)
    return generator.to(device), info
