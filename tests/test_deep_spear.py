"""Deep spear: a CNN's FC+ReLU head leaks the batch's feature vectors exactly, and they serve as
per-sample targets of a feature-matched image inversion (``spear-ig``)."""

from __future__ import annotations

import json

import torch

from gradleak.attacks.feature_match import FeatureMatcher, feature_distance
from gradleak.attacks.objective import GradientMatcher
from gradleak.attacks.spear.disaggregate import Settings
from gradleak.attacks.spear.layer import linear_relu_layers
from gradleak.attacks.spear.recover import find_layer, recover_layer
from gradleak.cli import main
from gradleak.metrics.features import feature_exact_fraction
from gradleak.models import build_model, list_models
from gradleak.models.taps import layer_inputs, tap_input
from gradleak.scenario import Scenario, simulate

HEAD = {"width": 2, "hidden_fc": 64}  # a tiny ConvNet with an FC+ReLU head


def _cnn_head(batch: int = 4, seed: int = 0):
    # BatchNorm in training mode keeps an untrained ConvNet's features diverse (in eval mode at
    # init every sample reaches the head with the same ReLU pattern: rank 1, nothing to split)
    return simulate(Scenario(dataset="digits", model="convnet", batch_size=batch, seed=seed, model_options=HEAD,
                             train_mode=True))


def test_hidden_fc_option_is_listed_and_off_by_default():
    lenet = next(m for m in list_models() if m["name"] == "lenet")
    assert lenet["options"]["hidden_fc"] == 0
    names = [n for n, _ in build_model("lenet", input_shape=(1, 8, 8), num_classes=10).named_parameters()]
    assert names[-2:] == ["fc.weight", "fc.bias"] and not any("hidden" in n for n in names)
    head = build_model("lenet", input_shape=(1, 8, 8), num_classes=10, hidden_fc=16)
    assert [(l.name, l.depth, l.lower, l.upper) for l in linear_relu_layers(head, (1, 8, 8))] == [
        ("hidden.0", 3, 0.0, 1.0)]  # sigmoid features: the attacker knows they lie in [0, 1]
    conv = build_model("convnet", input_shape=(1, 8, 8), num_classes=10, **HEAD)
    assert [(l.name, l.lower, l.upper) for l in linear_relu_layers(conv, (1, 8, 8))] == [("model.fc", 0.0, None)]


def test_features_recovered_exactly_through_a_cnn_head():
    observation, truth = _cnn_head()
    model = observation.build_model().double()
    target = find_layer(observation, model, "")
    rec = recover_layer(observation, model=model, target=target, settings=Settings(),
                        generator=torch.Generator().manual_seed(0))
    true = layer_inputs(observation.build_model(), truth.inputs, target.name).double()
    assert target.depth > 0 and rec.complete and rec.certified == [True] * 4
    assert feature_exact_fraction(rec.inputs, true) == 1.0
    assert float((torch.cdist(true, rec.inputs).min(1).values / true.norm(dim=1)).max()) < 1e-5


def test_feature_loss_is_zero_at_the_truth_and_decreases():
    observation, truth = _cnn_head()
    matcher = GradientMatcher(observation, distance="cosine")
    true = layer_inputs(matcher.model, truth.inputs, "model.fc").detach()
    fm = FeatureMatcher(matcher, layer="model.fc", targets=true, weight=1.0)
    assert fm.residual(truth.inputs, truth.labels) < 1e-10
    assert abs(float(fm(truth.inputs, truth.labels).detach()) - fm.loss_value(truth.inputs, truth.labels)) < 1e-6
    # the feature term alone, by plain gradient steps from a random start (no double backward: fast)
    x = torch.rand(truth.inputs.shape, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    values = []
    for _ in range(10):
        with tap_input(matcher.model, "model.fc") as tap:
            matcher.model(x)
        loss = feature_distance(tap.take(), true)
        values.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert values[-1] < 0.7 * values[0]
    assert float(feature_distance(true, true)) == 0.0


def test_cli_spear_ig_end_to_end(tmp_path):
    out = tmp_path / "d"
    code = main(["attack", "--dataset", "digits", "--model", "convnet", "--model-option", "width=2",
                 "--model-option", "hidden_fc=64", "--train-mode", "--attack", "spear-ig", "--option", "iterations=3",
                 "--batch-size", "4", "--seed", "0", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["feature_layer"] == "model.fc" and metrics["label_method"] == "spear-head"
    assert metrics["feature_exact_fraction"] == 1.0 and metrics["feature_certified_fraction"] == 1.0
    assert metrics["certified_fraction"] is None  # the images are not claimed exact


def test_cli_spear_ig_without_head_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--attack", "spear-ig", "--batch-size", "2",
                 "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'spear-ig'" in err and "hidden_fc" in err
    assert not out.exists()
    code = main(["attack", "--dataset", "digits", "--model", "mlp", "--attack", "spear-ig", "--batch-size", "2",
                 "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "attack 'spear'" in err
