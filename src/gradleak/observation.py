"""The threat model's two halves: what the server observes, and the truth kept apart.

Both are saved as a directory holding a JSON file (metadata) and a safetensors file (tensors).
Neither format can carry code, so loading an observation a client handed over is safe; any
file that is not valid safetensors (a pickle, a truncated file) is refused with
:class:`ObservationError` before anything is built from it.
"""

from __future__ import annotations

import json

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import ObservationError, ShapeError
from .fl.protocol import Protocol
from .models.base import ModelSpec

FORMAT_VERSION = 1
OBSERVATION_JSON = "observation.json"
OBSERVATION_TENSORS = "observation.safetensors"
TRUTH_JSON = "ground_truth.json"
TRUTH_TENSORS = "ground_truth.safetensors"
MAX_SAMPLES = 65_536  # larger client batches are not invertible anyway; refusing avoids huge allocations


@dataclass
class Observation:
    """Everything a curious server sees from one client in one round."""

    model: ModelSpec  # architecture of the global model
    parameters: dict[str, torch.Tensor]  # global weights sent to the client
    buffers: dict[str, torch.Tensor]  # BatchNorm statistics etc. sent to the client
    train_mode: bool  # whether the client ran the model in train mode (BatchNorm batch stats)
    protocol: Protocol  # fedsgd / fedavg and its local hyper-parameters
    update: dict[str, torch.Tensor]  # the shared update, one tensor per parameter name
    num_samples: int  # batch size the client reports (FedAvg weighting makes it public)
    labels: torch.Tensor | None = None  # set only when the client shares its labels
    defense: dict[str, Any] | None = None  # the defense applied before sharing, if any
    data: dict[str, Any] = field(default_factory=dict)  # public data domain: dataset, range, kind

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Refuse an observation that does not fit its model or holds NaN/Inf."""
        with torch.device("meta"):  # shapes only: a crafted spec cannot make us allocate a huge model
            model = _build(self.model)
        expected = {k: tuple(v.shape) for k, v in model.named_parameters()}
        expected_buffers = {k: tuple(v.shape) for k, v in model.named_buffers()}
        for what, tensors, ref in (
            ("parameters", self.parameters, expected),
            ("update", self.update, expected),
            ("buffers", self.buffers, expected_buffers),
        ):
            missing = sorted(set(ref) - set(tensors))
            extra = sorted(set(tensors) - set(ref))
            if missing or extra:
                raise ShapeError(
                    f"observation {what} do not match model {self.model.name!r}: "
                    f"missing {missing[:3]}, unexpected {extra[:3]}"
                )
            for k, t in tensors.items():
                if tuple(t.shape) != ref[k]:
                    raise ShapeError(
                        f"observation {what}[{k!r}] has shape {tuple(t.shape)} but model "
                        f"{self.model.name!r} expects {ref[k]}"
                    )
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise ObservationError(f"observation {what}[{k!r}] contains NaN or Inf")
        if not 1 <= self.num_samples <= MAX_SAMPLES:
            raise ObservationError(f"num_samples must be between 1 and {MAX_SAMPLES}, got {self.num_samples}")
        if self.labels is not None and self.labels.shape[0] != self.num_samples:
            raise ShapeError(
                f"observation has {self.labels.shape[0]} labels but num_samples={self.num_samples}"
            )

    # ------------------------------------------------------------------ model
    def build_model(self, *, device: str | torch.device = "cpu") -> nn.Module:
        """The global model as the client received it (weights, buffers, train/eval mode)."""
        model = _build(self.model)
        state = {**self.parameters, **self.buffers}
        model.load_state_dict(state, strict=True)
        model.train(self.train_mode)
        return model.to(device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.model.input_shape

    # --------------------------------------------------------------------- io
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"param/{k}": v for k, v in self.parameters.items()}
        tensors.update({f"buffer/{k}": v for k, v in self.buffers.items()})
        tensors.update({f"update/{k}": v for k, v in self.update.items()})
        if self.labels is not None:
            tensors["labels"] = self.labels
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, directory / OBSERVATION_TENSORS)
        meta = {
            "format": "gradleak.observation",
            "version": FORMAT_VERSION,
            "model": self.model.to_json(),
            "train_mode": self.train_mode,
            "protocol": self.protocol.to_json(),
            "update_kind": self.protocol.update_kind,
            "num_samples": self.num_samples,
            "labels_shared": self.labels is not None,
            "defense": self.defense,
            "data": self.data,
        }
        _write_json(directory / OBSERVATION_JSON, meta)

    @classmethod
    def load(cls, directory: str | Path) -> "Observation":
        directory = Path(directory)
        meta = _read_json(directory / OBSERVATION_JSON, expected_format="gradleak.observation")
        tensors = _read_tensors(directory / OBSERVATION_TENSORS)
        groups: dict[str, dict[str, torch.Tensor]] = {"param": {}, "buffer": {}, "update": {}}
        for key, value in tensors.items():
            prefix, _, name = key.partition("/")
            if prefix in groups:
                groups[prefix][name] = value
        try:
            return cls(
                model=ModelSpec.from_json(meta["model"]),
                parameters=groups["param"],
                buffers=groups["buffer"],
                train_mode=bool(meta["train_mode"]),
                protocol=Protocol.from_json(meta["protocol"]),
                update=groups["update"],
                num_samples=int(meta["num_samples"]),
                labels=tensors.get("labels"),
                defense=meta.get("defense"),
                data=dict(meta.get("data") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ObservationError(f"{directory / OBSERVATION_JSON}: missing or malformed field {exc}") from None


@dataclass
class GroundTruth:
    """The client's private batch: never handed to an attack, only to the metrics."""

    inputs: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None  # positions in the source dataset, for provenance

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"inputs": self.inputs, "labels": self.labels}
        if self.indices is not None:
            tensors["indices"] = self.indices
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, directory / TRUTH_TENSORS)
        _write_json(directory / TRUTH_JSON, {"format": "gradleak.ground_truth", "version": FORMAT_VERSION})

    @classmethod
    def load(cls, directory: str | Path) -> "GroundTruth":
        directory = Path(directory)
        _read_json(directory / TRUTH_JSON, expected_format="gradleak.ground_truth")
        tensors = _read_tensors(directory / TRUTH_TENSORS)
        if "inputs" not in tensors or "labels" not in tensors:
            raise ObservationError(f"{directory / TRUTH_TENSORS}: needs 'inputs' and 'labels' tensors")
        if not bool(torch.isfinite(tensors["inputs"]).all()):
            raise ObservationError(f"{directory / TRUTH_TENSORS}: inputs contain NaN or Inf")
        return cls(inputs=tensors["inputs"], labels=tensors["labels"], indices=tensors.get("indices"))


# ---------------------------------------------------------------------- helpers
def _build(spec: ModelSpec) -> nn.Module:
    from .models import create_model  # late import: models import nothing from here

    return create_model(spec)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _read_json(path: Path, *, expected_format: str) -> dict[str, Any]:
    if not path.is_file():
        raise ObservationError(f"missing file {path}")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ObservationError(f"{path} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ObservationError(f"{path} is not a {expected_format} file")
    if meta.get("version") != FORMAT_VERSION:
        raise ObservationError(f"{path}: unsupported version {meta.get('version')!r} (expected {FORMAT_VERSION})")
    return meta


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle included) is refused, never executed."""
    if not path.is_file():
        raise ObservationError(f"missing file {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ObservationError(f"{path} is not a valid safetensors file ({first})") from None


