"""Malformed observation and ground-truth directories: every one refused with one line, exit 2.

Each case damages a copy of a valid observation (digits, LeNet, batch 2) and attacks it; the
refusal must come from loading, before any attack work, and leave no ``--out`` behind.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from malformed_helpers import (  # noqa: F401  (fixtures)
    OBS_JSON, OBS_TENSORS, _no_long_work, edit_json, edit_tensors, first_update_key, obs, observation_dir, refused,
)


def _set(*path, value):
    def change(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _drop(key):
    return lambda meta: meta.pop(key)


def _raw_json(data: bytes):
    return lambda obs: (obs / OBS_JSON).write_bytes(data)


def _json(change):
    return lambda obs: edit_json(obs / OBS_JSON, change)


def _tensors(change):
    return lambda obs: edit_tensors(obs / OBS_TENSORS, change)


def _raw_tensors(make):
    return lambda obs: (obs / OBS_TENSORS).write_bytes(make(obs))


def _update(fn):
    def change(t):
        k = first_update_key(t)
        t[k] = fn(t[k])
    return _tensors(change)


def _labels(value):
    def change(t):
        t["labels"] = value
    return _tensors(change)


JSON_CASES = {
    "json-not-object": (_raw_json(b"[1, 2, 3]"), "observation.json"),
    "json-not-utf8": (_raw_json(b'{"format": "\xff\xfe gradleak"}'), ("utf-8", "not valid json")),
    "json-empty": (_raw_json(b""), "not valid json"),
    "json-truncated": (lambda obs: (obs / OBS_JSON).write_text((obs / OBS_JSON).read_text()[:60]), "not valid json"),
    "json-wrong-format": (_json(_set("format", value="gradleak.ground_truth")), "gradleak.observation"),
    "version-string": (_json(_set("version", value="1")), "version"),
    "num-samples-string": (_json(_set("num_samples", value="2")), "num_samples"),
    "num-samples-float": (_json(_set("num_samples", value=2.5)), "num_samples"),
    "num-samples-negative": (_json(_set("num_samples", value=-1)), "num_samples"),
    "num-samples-bool": (_json(_set("num_samples", value=True)), "num_samples"),
    "num-samples-huge": (_json(_set("num_samples", value=10**30)), "num_samples"),
    "num-samples-overflow": (lambda obs: (obs / OBS_JSON).write_text(
        (obs / OBS_JSON).read_text().replace('"num_samples": 2', '"num_samples": 1e999')), "num_samples"),
    "num-samples-missing": (_json(_drop("num_samples")), "num_samples"),
    "num-samples-misspelled": (_json(lambda m: m.update(num_sample=m.pop("num_samples"))), "num_sample"),
    "train-mode-string": (_json(_set("train_mode", value="false")), "train_mode"),
    "train-mode-int": (_json(_set("train_mode", value=0)), "train_mode"),
    "labels-shared-string": (_json(_set("labels_shared", value="yes")), "labels_shared"),
    "labels-shared-false-but-labels": (_json(_set("labels_shared", value=False)), "labels"),
    "unknown-top-level-key": (_json(lambda m: m.update(defence=None)), "defence"),
    "model-not-object": (_json(_set("model", value="lenet")), "model"),
    "model-name-misspelled": (_json(_set("model", "name", value="lenett")), "did you mean"),
    "model-name-number": (_json(_set("model", "name", value=5)), "name"),
    "input-shape-string": (_json(_set("model", "input_shape", value="1,8,8")), "input_shape"),
    "input-shape-float": (_json(_set("model", "input_shape", value=[1, 8.5, 8])), "input_shape"),
    "input-shape-zero": (_json(_set("model", "input_shape", value=[0, 8, 8])), "input_shape"),
    "input-shape-empty": (_json(_set("model", "input_shape", value=[])), "input_shape"),
    "input-shape-mismatch": (_json(_set("model", "input_shape", value=[1, 16, 16])), "shape"),
    "num-classes-string": (_json(_set("model", "num_classes", value="10")), "num_classes"),
    "num-classes-zero": (_json(_set("model", "num_classes", value=0)), "num_classes"),
    "model-options-not-object": (_json(_set("model", "options", value="abc")), "options"),
    "model-option-unknown": (_json(_set("model", "options", value={"initt": "uniform"})), "initt"),
    "model-option-bad-choice": (_json(_set("model", "options", value={"init": "bogus"})), "init"),
    "protocol-not-object": (_json(_set("protocol", value=["fedsgd"])), "protocol"),
    "protocol-misspelled": (_json(_set("protocol", "name", value="fedsdg")), "fedsgd"),
    "protocol-lr-string": (_json(_set("protocol", "lr", value="0.1")), "lr"),
    "protocol-lr-negative": (_json(_set("protocol", "lr", value=-0.1)), "lr"),
    "protocol-lr-nan": (lambda obs: (obs / OBS_JSON).write_text(
        (obs / OBS_JSON).read_text().replace('"lr": 0.1', '"lr": NaN')), "lr"),
    "protocol-epochs-float": (_json(_set("protocol", "local_epochs", value=1.5)), "local_epochs"),
    "protocol-batch-bool": (_json(_set("protocol", "local_batch_size", value=True)), "local_batch_size"),
    "protocol-shuffle-string": (_json(_set("protocol", "shuffle", value="yes")), "shuffle"),
    "protocol-shuffle-int": (_json(_set("protocol", "shuffle", value=1)), "shuffle"),
    "update-kind-mismatch": (_json(_set("update_kind", value="weight_delta")), "update_kind"),
    "defense-not-object": (_json(_set("defense", value=5)), "defense"),
    "data-not-object": (_json(_set("data", value=[1])), "data"),
    "data-min-string": (_json(_set("data", "min", value="a")), "min"),
    "data-range-inverted": (_json(lambda m: m["data"].update(min=1.0, max=0.0)), "max"),
    "data-kind-unknown": (_json(_set("data", "kind", value="video")), "kind"),
    "data-kind-records-for-images": (_json(_set("data", "kind", value="tabular")), "kind"),
    "data-class-names-count": (_json(_set("data", "class_names", value=["a"])), "classes"),
    "data-prior-not-object": (_json(_set("data", "prior", value="x")), "prior"),
    "data-prior-nan": (lambda obs: (obs / OBS_JSON).write_text((obs / OBS_JSON).read_text().replace(
        '"data": {', '"data": {"prior": {"mean": [NaN], "std": [1.0]}, ')), "prior"),
    "defense-value-out-of-range": (_json(_set("defense", value={"name": "secagg", "value": 2.5})), "secagg"),
    "defense-name-misspelled": (_json(_set("defense", value={"name": "noize", "value": 0.1})), "did you mean 'noise'"),
    "json-deeply-nested": (_raw_json(b"[" * 100000 + b"]" * 100000), "json"),
    "json-is-directory": (lambda obs: ((obs / OBS_JSON).unlink(), (obs / OBS_JSON).mkdir()), "observation.json"),
}

TENSOR_CASES = {
    "tensors-truncated": (_raw_tensors(lambda obs: (obs / OBS_TENSORS).read_bytes()[:500]), "safetensors"),
    "tensors-garbage": (_raw_tensors(lambda obs: b"this is not a tensor file at all"), "safetensors"),
    "tensors-empty": (_raw_tensors(lambda obs: b""), "safetensors"),
    "tensors-pickle": (_raw_tensors(lambda obs: pickle.dumps({"update/x": [1.0]})), ("pickle", "safetensors")),
    "tensors-missing": (lambda obs: (obs / OBS_TENSORS).unlink(), "missing"),
    "update-nan": (_update(lambda v: v.clone().fill_(float("nan"))), "nan"),
    "param-inf": (_tensors(lambda t: t.__setitem__(sorted(k for k in t if k.startswith("param/"))[0],
                                                    torch.full_like(t[sorted(k for k in t if k.startswith("param/"))[0]],
                                                                    float("inf")))), "inf"),
    "update-int": (_update(lambda v: v.to(torch.int32)), "dtype"),
    "update-float64": (_update(lambda v: v.to(torch.float64)), "dtype"),
    "update-bool": (_update(lambda v: v > 0), "dtype"),
    "update-wrong-shape": (_update(lambda v: v.reshape(-1)[:-1].clone()), "shape"),
    "update-missing-parameter": (_tensors(lambda t: t.pop(first_update_key(t))), "missing"),
    "update-extra-parameter": (_tensors(lambda t: t.__setitem__("update/extra.weight", torch.zeros(3))), "extra"),
    "unknown-tensor-group": (_tensors(lambda t: t.__setitem__("gradients/conv.weight", torch.zeros(3))), "gradients"),
    "labels-float": (_labels(torch.tensor([1.0, 2.0])), "labels"),
    "labels-out-of-range": (_labels(torch.tensor([3, 10])), "labels"),
    "labels-negative": (_labels(torch.tensor([-1, 2])), "labels"),
    "labels-2d": (_labels(torch.tensor([[1, 2]])), "labels"),
    "labels-count": (_labels(torch.tensor([1, 2, 3])), "labels"),
    "labels-missing-but-shared": (_tensors(lambda t: t.pop("labels")), "labels"),
}


OBSERVATION_CASES = {**JSON_CASES, **TENSOR_CASES}  # damage to observation.json or to its tensors


@pytest.mark.parametrize("damage,needle", list(OBSERVATION_CASES.values()), ids=list(OBSERVATION_CASES))
def test_malformed_observation(obs, tmp_path, refused, damage, needle):
    damage(obs)
    out = tmp_path / "out"
    refused(["attack", "--observation", obs, "--attack", "idlg", "--iterations", "2", "--quiet", "--out", out],
            out=out, needle=needle)


def _truth(change):
    return lambda gt: edit_tensors(gt / "ground_truth.safetensors", change)


TRUTH_CASES = {
    "truth-wrong-shape": (_truth(lambda t: t.__setitem__("inputs", torch.zeros(2, 1, 4, 4))), "shape"),
    "truth-nan": (_truth(lambda t: t.__setitem__("inputs", torch.full_like(t["inputs"], float("nan")))), "nan"),
    "truth-int-inputs": (_truth(lambda t: t.__setitem__("inputs", t["inputs"].to(torch.int64))), "dtype"),
    "truth-labels-out-of-range": (_truth(lambda t: t.__setitem__("labels", torch.tensor([0, 99]))), "labels"),
    "truth-labels-count": (_truth(lambda t: t.__setitem__("labels", torch.tensor([0]))), "labels"),
    "truth-labels-float": (_truth(lambda t: t.__setitem__("labels", torch.tensor([0.0, 1.0]))), "labels"),
    "truth-indices-float": (_truth(lambda t: t.__setitem__("indices", torch.tensor([0.5, 1.5]))), "indices"),
    "truth-json-missing": (lambda gt: (gt / "ground_truth.json").unlink(), "missing"),
    "truth-dir-missing": (lambda gt: __import__("shutil").rmtree(gt), ("does not exist", "missing")),
}


@pytest.mark.parametrize("damage,needle", list(TRUTH_CASES.values()), ids=list(TRUTH_CASES))
def test_malformed_ground_truth(obs, tmp_path, refused, damage, needle):
    damage(obs / "ground_truth")
    out = tmp_path / "out"
    refused(["attack", "--observation", obs, "--ground-truth", obs / "ground_truth", "--attack", "idlg",
             "--iterations", "2", "--quiet", "--out", out], out=out, needle=needle)


def test_observation_path_missing_or_a_file(tmp_path, refused):
    out = tmp_path / "out"
    refused(["attack", "--observation", tmp_path / "nowhere", "--attack", "idlg", "--quiet", "--out", out],
            out=out, needle="nowhere")
    (tmp_path / "file").write_text("x")
    refused(["attack", "--observation", tmp_path / "file", "--attack", "idlg", "--quiet", "--out", out],
            out=out, needle="file")
