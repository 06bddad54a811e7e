"""File-surgery helpers for the malformed-input cases (each case damages a copy of a valid file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

OBS_JSON = "observation.json"
OBS_TENSORS = "observation.safetensors"


def edit_json(path: Path, change: Callable[[dict], Any]) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def edit_tensors(path: Path, change: Callable[[dict], Any]) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def first_update_key(tensors: dict[str, torch.Tensor]) -> str:
    return sorted(k for k in tensors if k.startswith("update/"))[0]
