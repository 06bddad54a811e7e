"""Victim model registry: shapes, double backprop, determinism, paper layer tables, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from gradleak.errors import GradleakError, ShapeError, UnknownNameError
from gradleak.models import (
    MODELS,
    ModelSpec,
    build_model,
    classifier_layer,
    complete_spec,
    create_model,
    list_models,
)

SHAPES = [(1, 8, 8), (1, 25, 25), (3, 28, 28), (3, 32, 32), (3, 64, 64)]
#: small widths keep the big models fast; every other model runs with its defaults
FAST = {"convnet": {"width": 8}, "resnet18": {"width": 8}, "mlp": {"hidden": [32, 16]}}
NAMES = ["lenet", "cnn6", "cnn6d", "fcn3", "convnet", "resnet18", "mlp"]


def make(name: str, shape=(3, 32, 32), num_classes: int = 3, seed: int = 0, **options) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        options = {**FAST.get(name, {}), **options}
        return build_model(name, input_shape=shape, num_classes=num_classes, **options)


def test_all_models_registered():
    assert set(NAMES) <= set(MODELS.names())  # image models; record models are tested in test_tabular_models


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_linear_head(name, shape):
    model = make(name, shape, num_classes=5)
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, 5)
    head = classifier_layer(model)
    assert head.out_features == 5
    # the classifier is the last module the forward runs: its output is the logits
    seen = []
    head.register_forward_hook(lambda m, i, o: seen.append(o))
    assert torch.equal(model(torch.rand(1, *shape)), seen[-1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape,batch", [((1, 8, 8), 1), ((3, 28, 28), 2)])
def test_double_backprop_reaches_input(name, shape, batch):
    """Gradient matching differentiates the parameter gradient w.r.t. the dummy input;
    batch size 1 in train mode also checks BatchNorm never sees a 1x1 map."""
    model = make(name, shape).train()
    x = torch.rand(batch, *shape, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.arange(batch) % 3)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    sum(g.pow(2).sum() for g in grads).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_no_inplace_activations(name):
    for module in make(name).modules():
        assert not getattr(module, "inplace", False), module


@pytest.mark.parametrize("name", NAMES)
def test_init_is_deterministic_under_seed(name):
    a, b, c = make(name, seed=1), make(name, seed=1), make(name, seed=2)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_matches_module(name):
    model = make(name, (1, 25, 25)).eval()
    x = torch.rand(2, 1, 25, 25)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    out = functional_call(model, {**params, **buffers}, (x,))
    torch.testing.assert_close(out, model(x))
    grads = torch.autograd.grad(out.sum(), list(params.values()))
    assert all(g.shape == p.shape for g, p in zip(grads, params.values()))


def test_cnn6_layer_table_matches_rgap_repository():
    model = make("cnn6", (3, 32, 32), num_classes=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    table = [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs]
    assert table == [(3, 12, 4, 2, 2), (12, 36, 3, 2, 1), (36, 36, 3, 1, 1), (36, 36, 3, 1, 1),
                     (36, 64, 3, 2, 1), (64, 128, 3, 1, 1)]
    assert classifier_layer(model).in_features == 3200  # the paper's Linear(3200, 1)
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, 1)  # logistic setting
    assert model.input_shapes[0] == (3, 32, 32) and model.input_shapes[-1] == (3200,)


@pytest.mark.parametrize("name", ["cnn6", "cnn6d", "fcn3"])
def test_rgap_nets_have_no_bias_and_leaky_relu_02(name):
    model = make(name, (1, 28, 28))
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.LeakyReLU, nn.Tanh))]
    assert acts and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.2 for a in acts)
    assert len(model.layers()) == len(model.input_shapes)


def test_cnn6d_narrows_second_conv_to_20():
    convs = [m for m in make("cnn6d").modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [12, 20, 36, 36, 64, 128]
    assert convs[2].in_channels == 20


def test_fcn3_sizes():
    linears = [m for m in make("fcn3", (1, 28, 28), num_classes=1).modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 1000), (1000, 100), (100, 1)]


def test_lenet_uniform_init_and_default_option():
    model = make("lenet", (1, 28, 28), num_classes=10)
    params = torch.cat([p.flatten() for p in model.parameters()])
    assert params.abs().max() <= 0.5 and params.abs().max() > 0.45  # wide, unlike PyTorch's init
    assert classifier_layer(model).in_features == 588
    default = make("lenet", (1, 28, 28), num_classes=10, init="default")
    assert default.fc.weight.abs().max() < 0.05  # PyTorch's 1/sqrt(588) bound


def test_convnet_flatten_adapts_to_resolution():
    assert classifier_layer(make("convnet", (3, 28, 28))).in_features == 4 * 8 * 3 * 3
    assert classifier_layer(make("convnet", (3, 64, 64))).in_features == 4 * 8 * 7 * 7
    names = lambda m: [n for n, _ in m.named_parameters()]  # noqa: E731
    assert names(make("convnet", (1, 8, 8))) == names(make("convnet", (1, 32, 32)))
    assert sum(isinstance(m, nn.Conv2d) for m in make("convnet").modules()) == 8


def test_resnet18_activation_option():
    relu = make("resnet18")
    sig = make("resnet18", activation="sigmoid")
    assert any(isinstance(m, nn.ReLU) for m in relu.modules())
    assert any(isinstance(m, nn.Sigmoid) for m in sig.modules())
    assert not any(isinstance(m, nn.ReLU) for m in sig.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in relu.modules()) == 17
    assert classifier_layer(relu).in_features == 64  # 8 * width


def test_mlp_options_and_tabular_input():
    model = make("mlp", (30,), num_classes=2, hidden=[8], activation="tanh", bias=False)
    assert model(torch.rand(4, 30)).shape == (4, 2)
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    assert any(isinstance(m, nn.Tanh) for m in model.modules())


def test_mlp_init_gain_scales_every_weight_matrix():
    base = dict(shape=(30,), num_classes=3, hidden=[8, 8], activation="tanh")
    plain = make("mlp", **base)
    wide = make("mlp", init_gain=4.0, **base)
    for (name, p), (_, q) in zip(plain.named_parameters(), wide.named_parameters()):
        factor = 4.0 if name.endswith("weight") else 1.0  # biases keep PyTorch's default init
        assert torch.allclose(q, factor * p), name


def test_spec_json_round_trip_rebuilds_same_architecture():
    options = {"hidden": [32, 16], "bias": False}
    spec = ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, options=options)
    loaded = ModelSpec.from_json(json.loads(json.dumps(spec.to_json())))
    a, b = create_model(spec), create_model(loaded)
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]
    full = complete_spec(loaded)
    assert full.options == {"hidden": [32, 16], "activation": "relu", "bias": False, "init_gain": 1.0}
    json.dumps(full.to_json())


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownNameError, match="cnn6.*lenet"):
        build_model("vgg", input_shape=(3, 32, 32), num_classes=2)


@pytest.mark.parametrize(
    "name,options,pattern",
    [
        ("lenet", {"widht": 3}, "'widht'.*valid options: init"),
        ("cnn6", {"width": 3}, "'width'.*valid options: \\(none\\)"),
        ("lenet", {"init": "xavier"}, "'xavier'.*uniform, default"),
        ("resnet18", {"activation": "gelu"}, "'gelu'.*relu, sigmoid"),
        ("convnet", {"width": 0}, "'width' must be >= 1"),
        ("convnet", {"width": "64"}, "'width' must be int"),
        ("mlp", {"hidden": [32, "a"]}, "'hidden' must be list of int"),
        ("mlp", {"bias": 1}, "'bias' must be bool"),
        ("mlp", {"init_gain": float("nan")}, "'init_gain' must be a finite float"),
        ("mlp", {"init_gain": -1.0}, "'init_gain' must be >= 0"),
    ],
)
def test_bad_options_name_the_valid_ones(name, options, pattern):
    with pytest.raises(GradleakError, match=pattern):
        build_model(name, input_shape=(3, 32, 32), num_classes=2, **options)


def test_bad_shapes():
    with pytest.raises(ShapeError, match="C, H, W"):
        build_model("cnn6", input_shape=(30,), num_classes=2)
    with pytest.raises(ShapeError, match="num_classes"):
        build_model("lenet", input_shape=(1, 8, 8), num_classes=0)


def test_list_models_is_json_with_defaults():
    listing = json.loads(json.dumps(list_models()))
    by_name = {m["name"]: m for m in listing}
    assert set(NAMES) <= set(by_name)
    assert by_name["convnet"]["options"] == {"width": 64, "hidden_fc": 0}
    assert by_name["mlp"]["options"]["hidden"] == [256, 256]
    assert by_name["resnet18"]["option_details"]["activation"]["choices"][:2] == ["relu", "sigmoid"]
    assert all(m["description"] for m in listing)
