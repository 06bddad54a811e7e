"""The tensors the report's pictures need, kept beside ``results.json`` so the page can be re-drawn.

An audit takes minutes; its page takes a second. Saving the pictures' tensors (safetensors,
never pickle) lets ``gradleak.audit.page.rerender`` rebuild ``report.html`` from a finished
output directory, e.g. after a change to the page or its wording. The file holds the same
private samples the report's PNGs already show, so it is as sensitive as the report itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FILE = "report_inputs.safetensors"


@dataclass
class PageInputs:
    """Everything :func:`gradleak.audit.page.write_report` draws besides ``results.json``."""

    pictures: dict[int, dict[str, torch.Tensor]]  # batch size -> {"truth": ..., attack: aligned reconstruction}
    defense_truth: torch.Tensor | None  # the defense sweep's private samples
    defense_reconstructions: list[torch.Tensor]  # one per defense row, aligned with defense_truth
    malicious: dict[str, torch.Tensor] | None  # the malicious-server picture's columns


def save_inputs(directory: Path, inputs: PageInputs) -> Path:
    """Write ``FILE`` into ``directory``; keys and their order go into the safetensors metadata."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    order: dict[str, Any] = {"pictures": {}, "defense": 0, "malicious": []}
    for b, columns in inputs.pictures.items():
        order["pictures"][str(b)] = list(columns)
        for i, tensor in enumerate(columns.values()):
            tensors[f"pictures.{b}.{i}"] = tensor
    if inputs.defense_truth is not None:
        tensors["defense.truth"] = inputs.defense_truth
        for i, tensor in enumerate(inputs.defense_reconstructions):
            tensors[f"defense.{i}"] = tensor
        order["defense"] = len(inputs.defense_reconstructions)
    if inputs.malicious is not None:
        order["malicious"] = list(inputs.malicious)
        for i, tensor in enumerate(inputs.malicious.values()):
            tensors[f"malicious.{i}"] = tensor
    path = directory / FILE
    save_file({k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}, str(path),
              metadata={"order": json.dumps(order)})
    return path


def load_inputs(directory: Path) -> PageInputs:
    """Read ``FILE`` back (safetensors only: loading never executes code)."""
    from safetensors import safe_open

    path = directory / FILE
    with safe_open(str(path), framework="pt") as handle:
        order = json.loads(handle.metadata()["order"])
        get = handle.get_tensor
        pictures = {int(b): {name: get(f"pictures.{b}.{i}") for i, name in enumerate(names)}
                    for b, names in order["pictures"].items()}
        has_defense = "defense.truth" in handle.keys()
        truth = get("defense.truth") if has_defense else None
        recs = [get(f"defense.{i}") for i in range(order["defense"])] if has_defense else []
        malicious = {name: get(f"malicious.{i}") for i, name in enumerate(order["malicious"])} or None
    return PageInputs(pictures=pictures, defense_truth=truth, defense_reconstructions=recs, malicious=malicious)
