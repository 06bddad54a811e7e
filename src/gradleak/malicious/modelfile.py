"""A received model as a file: a safetensors state dict, with its architecture as JSON.

Format (``save_model_file``):

* ``F`` (any name, ``.safetensors`` by convention): the state dict - every parameter and buffer
  under its ``state_dict()`` name. Safetensors holds raw tensors and a JSON header only, so
  reading it cannot run code.
* the architecture, optional: the ``ModelSpec`` as JSON, either beside ``F`` (``F`` with the
  suffix ``.json``: ``{"format": "gradleak.model", "version": 1, "model": {...}}``) or in the
  safetensors header's metadata under ``gradleak.model``. Without it only the tensors are checked.

Anything that is not a safetensors file is refused with one line before it is parsed; a pickle
(``torch.save``'s zip archive or a raw pickle stream) is named as such and never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import DataError
from ..models.base import ModelSpec

FORMAT = "gradleak.model"
VERSION = 1
MAX_HEADER = 100_000_000  # bytes; safetensors' own limit on the JSON header


def spec_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_model_file(model: nn.Module, path: str | Path, *, spec: ModelSpec | None = None) -> None:
    """Write ``model``'s state dict to ``path`` (safetensors) and, with ``spec``, the JSON beside it."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {FORMAT: json.dumps(spec.to_json())} if spec is not None else None
    save_file(tensors, path, metadata=meta)
    if spec is not None:
        spec_path(path).write_text(json.dumps({"format": FORMAT, "version": VERSION, "model": spec.to_json()},
                                              indent=2) + "\n")


def _sniff(path: Path) -> None:
    """Refuse what is clearly not safetensors, naming what it looks like, before any parsing."""
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] == b"PK\x03\x04":
        raise DataError(f"{path} is a zip archive (torch.save pickle?), not safetensors: refused, never unpickled")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        raise DataError(f"{path} is a pickle stream, not safetensors: refused, never unpickled")
    if len(head) < 8 or not 2 <= int.from_bytes(head, "little") <= MAX_HEADER:
        raise DataError(f"{path} is not a safetensors file (no valid header)")


def load_model_file(path: str | Path, *, spec: str | Path | None = None) -> tuple[dict[str, torch.Tensor], ModelSpec | None]:
    """(state dict, spec or None) of a model file; anything else raises :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"model file {path} does not exist")
    if not path.is_file():
        raise DataError(f"model file {path} is not a file")
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DataError(f"{path} is not a valid safetensors file ({first})") from None
    if not state:
        raise DataError(f"{path} holds no tensors")
    raw: Any = None
    source = Path(spec) if spec is not None else spec_path(path)
    if spec is not None or source.is_file():
        raw = _read_spec(source)
    elif FORMAT in header:
        raw = _parse(header[FORMAT], f"{path} header metadata")
    return state, None if raw is None else _to_spec(raw, source)


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not valid JSON ({exc.msg})") from None


def _read_spec(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"model spec {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"model spec {path} is not a JSON text file") from None
    data = _parse(text, str(path))
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return data.get("model")
    return data


def _to_spec(raw: Any, where: Path) -> ModelSpec:
    from ..errors import GradleakError

    try:
        return ModelSpec.from_json(raw, where=f"{where}: model spec")  # strict: names the bad field
    except GradleakError as exc:
        raise DataError(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DataError(f"{where}: not a model spec (needs name, input_shape, num_classes)") from None
