"""Observation / GroundTruth I/O: round trips, and refusal of unsafe or broken files."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from gradleak.errors import ObservationError, ShapeError
from gradleak.observation import OBSERVATION_JSON, OBSERVATION_TENSORS, GroundTruth, Observation

from conftest import make_observation


def test_round_trip(tmp_path, fedavg_observation):
    obs, truth = fedavg_observation
    obs.save(tmp_path / "obs")
    truth.save(tmp_path / "gt")
    loaded = Observation.load(tmp_path / "obs")
    assert loaded.model == obs.model and loaded.protocol == obs.protocol
    assert loaded.train_mode == obs.train_mode and loaded.num_samples == obs.num_samples
    for name in obs.update:
        assert torch.equal(loaded.update[name], obs.update[name])
        assert torch.equal(loaded.parameters[name], obs.parameters[name])
    assert loaded.labels is None and loaded.data == obs.data
    gt = GroundTruth.load(tmp_path / "gt")
    assert torch.equal(gt.inputs, truth.inputs) and torch.equal(gt.labels, truth.labels)


def test_shared_labels_round_trip(tmp_path):
    obs, truth = make_observation(share_labels=True, batch_size=2)
    obs.save(tmp_path)
    assert torch.equal(Observation.load(tmp_path).labels, truth.labels)


def test_build_model_reproduces_client_outputs(digits_observation):
    obs, truth = digits_observation
    model = obs.build_model()
    assert model.training == obs.train_mode
    again = obs.build_model()
    torch.testing.assert_close(model(truth.inputs), again(truth.inputs))


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_without_running(tmp_path, digits_observation):
    obs, _ = digits_observation
    obs.save(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / OBSERVATION_TENSORS).write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ObservationError, match="not a valid safetensors"):
        Observation.load(tmp_path)
    assert not marker.exists()


def test_torch_save_file_is_refused(tmp_path, digits_observation):
    obs, _ = digits_observation
    obs.save(tmp_path)
    torch.save({"update/x": torch.zeros(1)}, tmp_path / OBSERVATION_TENSORS)
    with pytest.raises(ObservationError):
        Observation.load(tmp_path)


def test_nan_in_update_is_refused(tmp_path, digits_observation):
    obs, _ = digits_observation
    obs.save(tmp_path)
    tensors = load_file(tmp_path / OBSERVATION_TENSORS)
    key = next(k for k in tensors if k.startswith("update/"))
    tensors[key][0] = float("nan")
    save_file(tensors, tmp_path / OBSERVATION_TENSORS)
    with pytest.raises(ObservationError, match="NaN or Inf"):
        Observation.load(tmp_path)
    bad = dict(obs.update)
    bad[key.split("/", 1)[1]] = torch.full_like(bad[key.split("/", 1)[1]], float("inf"))
    with pytest.raises(ObservationError, match="NaN or Inf"):
        Observation(**{**obs.__dict__, "update": bad})


def test_shape_mismatch_is_refused(tmp_path, digits_observation):
    obs, _ = digits_observation
    obs.save(tmp_path)
    meta = json.loads((tmp_path / OBSERVATION_JSON).read_text())
    meta["model"]["input_shape"] = [3, 8, 8]
    (tmp_path / OBSERVATION_JSON).write_text(json.dumps(meta))
    with pytest.raises(ShapeError, match="expects"):
        Observation.load(tmp_path)


def test_missing_update_tensor_is_refused(digits_observation):
    obs, _ = digits_observation
    update = dict(obs.update)
    update.pop(next(iter(update)))
    with pytest.raises(ShapeError, match="missing"):
        Observation(**{**obs.__dict__, "update": update})


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"format": "other"})])
def test_corrupt_json_is_refused(tmp_path, digits_observation, content):
    obs, _ = digits_observation
    obs.save(tmp_path)
    (tmp_path / OBSERVATION_JSON).write_text(content)
    with pytest.raises(ObservationError):
        Observation.load(tmp_path)


def test_missing_files_are_refused(tmp_path, digits_observation):
    with pytest.raises(ObservationError, match="does not exist"):
        Observation.load(tmp_path / "nowhere")
    obs, _ = digits_observation
    obs.save(tmp_path)
    (tmp_path / OBSERVATION_TENSORS).unlink()
    with pytest.raises(ObservationError, match="missing file"):
        Observation.load(tmp_path)


def test_truncated_tensor_file_is_refused(tmp_path, digits_observation):
    obs, _ = digits_observation
    obs.save(tmp_path)
    data = (tmp_path / OBSERVATION_TENSORS).read_bytes()
    (tmp_path / OBSERVATION_TENSORS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ObservationError):
        Observation.load(tmp_path)


def test_crafted_huge_model_spec_is_refused_without_allocating(tmp_path, digits_observation):
    """A spec claiming a gigantic input is checked on the meta device, never materialised."""
    obs, _ = digits_observation
    obs.save(tmp_path)
    meta = json.loads((tmp_path / OBSERVATION_JSON).read_text())
    meta["model"] = {"name": "mlp", "input_shape": [3, 100000, 100000], "num_classes": 10, "options": {}}
    (tmp_path / OBSERVATION_JSON).write_text(json.dumps(meta))
    with pytest.raises(ShapeError):
        Observation.load(tmp_path)


@pytest.mark.parametrize("value", [0, 10**12])
def test_implausible_sample_count_is_refused(tmp_path, digits_observation, value):
    obs, _ = digits_observation
    obs.save(tmp_path)
    meta = json.loads((tmp_path / OBSERVATION_JSON).read_text())
    meta["num_samples"] = value
    (tmp_path / OBSERVATION_JSON).write_text(json.dumps(meta))
    with pytest.raises(ObservationError, match="num_samples"):
        Observation.load(tmp_path)
