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

from .errors import GradleakError, ObservationError, ShapeError
from .validation import as_bool, as_column_statistics, as_float, as_int, as_mapping, as_str, check_keys
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
    # buffers the client returned after its local training (its whole state_dict, as FedAvg
    # clients often send), None when it returns only the update; in train mode they reveal
    # each BatchNorm layer's batch statistics (gradleak.fl.bn_stats)
    updated_buffers: dict[str, torch.Tensor] | None = None

    @property
    def buffers_shared(self) -> bool:
        return self.updated_buffers is not None

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Refuse an observation that does not fit its model or holds NaN/Inf."""
        with torch.device("meta"):  # shapes only: a crafted spec cannot make us allocate a huge model
            model = _build(self.model)
        expected = {k: tuple(v.shape) for k, v in model.named_parameters()}
        expected_buffers = {k: tuple(v.shape) for k, v in model.named_buffers()}
        buffer_float = {k: v.is_floating_point() for k, v in model.named_buffers()}
        groups = [("parameters", self.parameters, expected), ("update", self.update, expected),
                  ("buffers", self.buffers, expected_buffers)]
        if self.updated_buffers is not None:
            groups.append(("updated_buffers", self.updated_buffers, expected_buffers))
        for what, tensors, ref in groups:
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
                floating = buffer_float[k] if what.endswith("buffers") else True
                if t.is_floating_point() != floating or t.dtype in _REFUSED_DTYPES:
                    raise ObservationError(f"observation {what}[{k!r}] has dtype {_dtype(t)}; expected "
                                           f"{'a floating' if floating else 'an integer'} dtype")
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise ObservationError(f"observation {what}[{k!r}] contains NaN or Inf")
        for k, t in self.update.items():
            if t.dtype != self.parameters[k].dtype:
                raise ObservationError(f"observation update[{k!r}] has dtype {_dtype(t)} but its parameter is "
                                       f"{_dtype(self.parameters[k])}")
        self._check_data_fits()
        if not 1 <= self.num_samples <= MAX_SAMPLES:
            raise ObservationError(f"num_samples must be between 1 and {MAX_SAMPLES}, got {self.num_samples}")
        if self.labels is not None:
            check_labels(self.labels, num_samples=self.num_samples, num_classes=self.model.num_classes,
                         what="observation labels")

    def _check_data_fits(self) -> None:
        """The data record must describe this model's inputs and outputs (kind vs shape, class names)."""
        from .data.schema import RECORD_KINDS

        kind = self.data.get("kind", "image")
        if kind in RECORD_KINDS and len(self.input_shape) not in (1, 2):
            raise ShapeError(f"observation data kind {kind!r} needs records (F or T x F inputs) but model "
                             f"{self.model.name!r} takes {self.input_shape}")
        names = self.data.get("class_names")
        classes = self.model.num_classes
        if isinstance(names, list) and len(names) != classes and not (classes == 1 and len(names) == 2):
            raise ShapeError(f"observation data names {len(names)} classes but model {self.model.name!r} has "
                             f"{classes} outputs")
        prior = self.data.get("prior")
        if isinstance(prior, dict) and isinstance(prior.get("mean"), list) and len(prior["mean"]) != self.input_shape[-1]:
            raise ShapeError(f"observation data prior has {len(prior['mean'])} column means but the inputs have "
                             f"{self.input_shape[-1]} columns")

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
        tensors.update({f"returned/{k}": v for k, v in (self.updated_buffers or {}).items()})
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
            "buffers_shared": self.buffers_shared,
            "defense": self.defense,
            "data": self.data,
        }
        _write_json(directory / OBSERVATION_JSON, meta)

    @classmethod
    def load(cls, directory: str | Path) -> "Observation":
        """Read and check a saved observation: every JSON field's type, every tensor's dtype and shape."""
        directory = Path(directory)
        try:
            return cls._load(directory)
        except GradleakError as exc:  # name the observation in every message, whichever check refused it
            message = str(exc) if str(directory) in str(exc) else f"{directory}: {exc}"
            kind = type(exc) if isinstance(exc, (ObservationError, ShapeError)) else ObservationError
            raise kind(message) from None

    @classmethod
    def _load(cls, directory: Path) -> "Observation":
        _check_directory(directory, what="observation", file=OBSERVATION_JSON)
        where = str(directory / OBSERVATION_JSON)
        meta = _read_json(directory / OBSERVATION_JSON, expected_format="gradleak.observation")
        check_keys(meta, where=where, required=OBSERVATION_FIELDS, optional=OPTIONAL_OBSERVATION_FIELDS)
        tensors = _read_tensors(directory / OBSERVATION_TENSORS)
        groups: dict[str, dict[str, torch.Tensor]] = {"param": {}, "buffer": {}, "update": {}, "returned": {}}
        for key, value in tensors.items():
            prefix, _, name = key.partition("/")
            if prefix in groups and name:
                groups[prefix][name] = value
            elif key != "labels":
                raise ObservationError(f"{directory / OBSERVATION_TENSORS}: unexpected tensor {key!r} (expected "
                                       f"param/NAME, buffer/NAME, update/NAME and, when shared, labels and returned/NAME)")
        protocol = Protocol.from_json(meta["protocol"], where=f"{where}: protocol")
        if as_str(meta["update_kind"], what=f"{where}: update_kind") != protocol.update_kind:
            raise ObservationError(f"{where}: update_kind {meta['update_kind']!r} does not fit protocol "
                                   f"{protocol.name!r} (expected {protocol.update_kind!r})")
        labels_shared = as_bool(meta["labels_shared"], what=f"{where}: labels_shared")
        if labels_shared != ("labels" in tensors):
            raise ObservationError(f"{where}: labels_shared is {str(labels_shared).lower()} but "
                                   f"{OBSERVATION_TENSORS} {'lacks' if labels_shared else 'holds'} a 'labels' tensor")
        buffers_shared = as_bool(meta.get("buffers_shared", False), what=f"{where}: buffers_shared")
        if not buffers_shared and groups["returned"]:
            raise ObservationError(f"{where}: buffers_shared is false but {OBSERVATION_TENSORS} holds returned/ "
                                   f"tensors")
        return cls(
            model=ModelSpec.from_json(meta["model"], where=f"{where}: model"),
            parameters=groups["param"],
            buffers=groups["buffer"],
            train_mode=as_bool(meta["train_mode"], what=f"{where}: train_mode"),
            protocol=protocol,
            update=groups["update"],
            num_samples=as_int(meta["num_samples"], what=f"{where}: num_samples", minimum=1, maximum=MAX_SAMPLES),
            labels=tensors.get("labels"),
            defense=_defense_record(meta.get("defense"), where=f"{where}: defense"),
            data=_data_record(meta.get("data") or {}, where=f"{where}: data"),
            updated_buffers=groups["returned"] if buffers_shared else None,
        )


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
        _check_directory(directory, what="ground truth", file=TRUTH_JSON)
        _read_json(directory / TRUTH_JSON, expected_format="gradleak.ground_truth")
        tensors = _read_tensors(directory / TRUTH_TENSORS)
        if "inputs" not in tensors or "labels" not in tensors:
            raise ObservationError(f"{directory / TRUTH_TENSORS}: needs 'inputs' and 'labels' tensors")
        unexpected = sorted(set(tensors) - {"inputs", "labels", "indices"})
        if unexpected:
            raise ObservationError(f"{directory / TRUTH_TENSORS}: unexpected tensor {unexpected[0]!r}")
        inputs = tensors["inputs"]
        if not inputs.is_floating_point() or inputs.dtype in _REFUSED_DTYPES:
            raise ObservationError(f"{directory / TRUTH_TENSORS}: inputs have dtype {_dtype(inputs)}; expected "
                                   f"a floating dtype")
        if inputs.ndim < 2:
            raise ShapeError(f"{directory / TRUTH_TENSORS}: inputs have shape {tuple(inputs.shape)}; expected "
                             f"a batch (N x ...)")
        if not bool(torch.isfinite(inputs).all()):
            raise ObservationError(f"{directory / TRUTH_TENSORS}: inputs contain NaN or Inf")
        check_labels(tensors["labels"], num_samples=inputs.shape[0], num_classes=None,
                     what=f"{directory / TRUTH_TENSORS}: labels")
        if "indices" in tensors:  # provenance: positions in the source dataset
            check_labels(tensors["indices"], num_samples=inputs.shape[0], num_classes=None,
                         what=f"{directory / TRUTH_TENSORS}: indices", noun="dataset positions")
        return cls(inputs=inputs, labels=tensors["labels"], indices=tensors.get("indices"))

    def check_against(self, observation: Observation) -> None:
        """Refuse a ground truth that is not the batch behind ``observation`` (shape, label range)."""
        expected = (observation.num_samples, *observation.input_shape)
        if tuple(self.inputs.shape) != expected:
            raise ShapeError(f"ground truth inputs have shape {tuple(self.inputs.shape)} but the observation is "
                             f"{expected}")
        check_labels(self.labels, num_samples=observation.num_samples, num_classes=observation.model.num_classes,
                     what="ground truth labels")


# ---------------------------------------------------------------------- helpers
# Fields of observation.json as save() writes them; the optional ones may be absent (older files).
OBSERVATION_FIELDS = ("format", "version", "model", "train_mode", "protocol", "update_kind", "num_samples",
                      "labels_shared")
OPTIONAL_OBSERVATION_FIELDS = ("defense", "data", "buffers_shared")
_REFUSED_DTYPES = (torch.bool,)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def check_labels(labels: torch.Tensor, *, num_samples: int, num_classes: int | None, what: str,
                 noun: str = "class indices") -> None:
    """Class indices: integer dtype, one per sample, in ``[0, num_classes)`` (a single-logit model: 0 or 1)."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ObservationError(f"{what} have dtype {_dtype(labels)}; expected integer {noun}")
    if tuple(labels.shape) != (num_samples,):
        raise ShapeError(f"{what} have shape {tuple(labels.shape)}; expected ({num_samples},), one per sample")
    classes = None if num_classes is None else max(num_classes, 2)
    if labels.numel() and (int(labels.min()) < 0 or (classes is not None and int(labels.max()) >= classes)):
        valid = "non-negative" if classes is None else f"in [0, {classes - 1}]"
        raise ObservationError(f"{what} hold {labels.tolist()[:8]}; {noun} must be {valid}")


def _check_directory(directory: Path, *, what: str, file: str) -> None:
    if not directory.exists():
        raise ObservationError(f"missing file {directory / file}: {what} directory {directory} does not exist")
    if not directory.is_dir():
        raise ObservationError(f"{what} {directory} is not a directory")


def _defense_record(raw: Any, *, where: str) -> dict[str, Any] | None:
    """``null`` or the JSON record of a registered defense (``name`` and a finite ``value`` or null)."""
    if raw is None:
        return None
    from .defenses import DEFENSES  # late import: defenses import this module

    record = as_mapping(raw, what=where)
    if "name" not in record:
        raise ObservationError(f"{where}: missing field 'name'")
    from .defenses import parse_defense

    name = as_str(record["name"], what=f"{where} name")
    DEFENSES.get(name)
    value = record.get("value")
    if value is not None:
        as_float(value, what=f"{where} value")
    parse_defense(name if value is None else f"{name}:{value}")  # the defense's own range checks (secagg:2.5...)
    return record


def _data_record(raw: Any, *, where: str) -> dict[str, Any]:
    """The public data domain: known fields type-checked (kind, value range, names)."""
    from .data.schema import RECORD_KINDS

    data = dict(as_mapping(raw, what=where))
    if "kind" in data:
        as_str(data["kind"], what=f"{where} kind", choices=("image", *sorted(RECORD_KINDS)))
    if "dataset" in data and data["dataset"] is not None:
        as_str(data["dataset"], what=f"{where} dataset")
    lo = as_float(data.get("min", 0.0), what=f"{where} min")
    hi = as_float(data.get("max", 1.0), what=f"{where} max")
    if not lo < hi:
        raise ObservationError(f"{where}: max ({hi:g}) must be greater than min ({lo:g})")
    names = data.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ObservationError(f"{where} class_names must be a list of strings")
    if data.get("prior") is not None:
        as_column_statistics(data["prior"], what=f"{where} prior")
    if data.get("schema") is not None:
        from .data.schema import RecordSchema

        try:
            RecordSchema.from_json(data["schema"])
        except ObservationError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ObservationError(f"{where} schema is malformed ({exc.__class__.__name__}: {exc})") from None
    return data


def _build(spec: ModelSpec) -> nn.Module:
    from .models import create_model  # late import: models import nothing from here

    return create_model(spec)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _read_json(path: Path, *, expected_format: str) -> dict[str, Any]:
    if not path.is_file():
        raise ObservationError(f"missing file {path}")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ObservationError(f"{path} is not UTF-8 text, so not valid JSON") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ObservationError(f"{path} is not valid JSON ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise ObservationError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ObservationError(f"{path} is not a {expected_format} file")
    if type(meta.get("version")) is not int or meta.get("version") != FORMAT_VERSION:
        raise ObservationError(f"{path}: version must be the integer {FORMAT_VERSION}, got {meta.get('version')!r}")
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


