"""R-GAP: exact recovery on small nets (float64), the fast solver against the dense reference,
rank counts on hand-checked layers, twin data, H-GAP's choice, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gradleak.analysis.chain import layer_chain, layer_signals
from gradleak.analysis.dense import dense_matrices, dense_recursion, dense_solve
from gradleak.analysis.operators import LayerMaps
from gradleak.analysis.rank import rank_analysis
from gradleak.analysis.system import LayerSystem, SolveSettings
from gradleak.analysis.twin import other_margin, twin_data
from gradleak.attacks import create_attack
from gradleak.attacks.rgap_head import sample_loss
from gradleak.attacks.rgap_hgap import smoothness
from gradleak.attacks.rgap_solver import invert
from gradleak.cli import main
from gradleak.errors import GradleakError

from conftest import make_observation


def _net(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    leaky = lambda: nn.LeakyReLU(0.2)  # noqa: E731
    nets = {
        # fully connected, bias, sigmoid, 3 classes
        "fc-bias-sigmoid": (nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Sigmoid(), nn.Linear(16, 3)), (3, 2, 2)),
        # fully connected, no bias, LeakyReLU, single logit (the paper's logistic setting)
        "fc-nobias-leaky-logistic": (nn.Sequential(nn.Flatten(), nn.Linear(12, 16, bias=False), leaky(),
                                                   nn.Linear(16, 1, bias=False)), (3, 2, 2)),
        # convolutions: stride 2 with padding, no bias, LeakyReLU, two classes
        "conv-stride2-nobias-leaky": (nn.Sequential(
            nn.Conv2d(2, 12, 3, stride=2, padding=1, bias=False), leaky(),
            nn.Conv2d(12, 16, 3, stride=1, padding=1, bias=False), leaky(),
            nn.Flatten(), nn.Linear(16 * 16, 2, bias=False)), (2, 8, 8)),
        # convolutions with bias and sigmoid, stride 2 with padding, identity in between
        "conv-bias-sigmoid": (nn.Sequential(
            nn.Conv2d(1, 6, 3, stride=1, padding=1), nn.Sigmoid(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.Identity(),
            nn.Flatten(), nn.Linear(8 * 9, 4)), (1, 6, 6)),
    }
    model, shape = nets[kind]
    return model.double().eval(), shape


def _gradients(model: nn.Module, x: torch.Tensor, label: int) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(sample_loss(model(x.unsqueeze(0)), label), list(params.values()))
    return {n: g.detach() for n, g in zip(params, grads)}


@pytest.mark.parametrize("kind", ["fc-bias-sigmoid", "fc-nobias-leaky-logistic", "conv-stride2-nobias-leaky", "conv-bias-sigmoid"])
def test_exact_recovery_and_dense_reference(kind):
    model, shape = _net(kind)
    assert rank_analysis(model, input_shape=shape).closed_form_full_rank
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        logits = model(x.unsqueeze(0))[0]
    # logistic: the label that makes the margin negative, where the reading is unique (Fig. 1)
    label = int(logits[0] < 0) if logits.numel() == 1 else 1
    grads = _gradients(model, x, label)
    inversion = invert(model, gradients=grads, input_shape=shape, box=(0.0, 1.0))
    best = inversion.best
    assert best.branch.label == label and not inversion.ambiguous
    assert (best.x - x.reshape(-1)).abs().max() < 1e-8
    assert best.fit < 1e-9
    # the independent dense reference (Algorithm 1 with dense Jacobians and lstsq) agrees
    chain = layer_chain(model, input_shape=shape)
    weights = [grads[n] for n, p in model.named_parameters() if p.dim() > 1]
    ref = dense_recursion(chain, head_x=best.branch.x, head_k=best.branch.k, gradients=weights)
    assert (ref - best.x).abs().max() < 1e-8


def test_operators_and_layer_solver_match_dense_reference():
    """Matrix-free W, K and the CG / Cholesky / pseudo-inverse solves against dense matrices."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 5, 3, stride=1, padding=2, dilation=2, bias=False), nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(5 * 7 * 7, 2, bias=False)).double()
    chain = layer_chain(conv, input_shape=(3, 7, 7))
    x = torch.rand(147, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xs, zs, ks = layer_signals(chain, x, lambda logits: sample_loss(logits, 1))
    layer, k, z = chain[0], ks[0], zs[0]
    maps = LayerMaps(layer, k)
    w_rows, k_rows = dense_matrices(layer, k)
    v = torch.randn(1, 147, dtype=torch.float64)
    assert torch.allclose(maps.weight_rows(v)[0], w_rows @ v[0])
    assert torch.allclose(maps.gradient_rows(v)[0], k_rows @ v[0])
    grad = maps.gradient_rows(x.reshape(1, -1))
    system = LayerSystem(layer, k=k, z=z, grad=grad)
    scaled = torch.cat([w_rows, system.scale ** 0.5 * k_rows])
    assert torch.allclose(system.dense(), scaled.T @ scaled)
    ref = dense_solve(layer, k=k, z=z, grad_w=grad)
    # dense: a float32 Cholesky refined against the float64 residual where conditioning allows
    for settings, methods in ((SolveSettings(method="cg"), ("cg",)),
                              (SolveSettings(method="dense"), ("cholesky32+refine", "cholesky"))):
        sol = system.solve(settings)
        assert sol.method in methods and sol.residual < 1e-12
        assert (sol.x - ref).abs().max() < 1e-9 and (sol.x - x).abs().max() < 1e-9
    assert system.rank()[0] == 147
    # rank deficient (2 of 5 output channels): the minimum-norm solution, like the dense pinv
    narrow = nn.Sequential(nn.Conv2d(3, 1, 3, stride=2, padding=1, bias=False), nn.LeakyReLU(0.2),
                           nn.Flatten(), nn.Linear(16, 2, bias=False)).double()
    chain = layer_chain(narrow, input_shape=(3, 7, 7))
    xs, zs, ks = layer_signals(chain, x, lambda logits: sample_loss(logits, 0))
    grad = LayerMaps(chain[0], ks[0]).gradient_rows(x.reshape(1, -1))
    sol = LayerSystem(chain[0], k=ks[0], z=zs[0], grad=grad).solve()
    assert sol.method == "pinv" and sol.full_rank is False and sol.residual < 1e-10
    assert (sol.x - dense_solve(chain[0], k=ks[0], z=zs[0], grad_w=grad)).abs().max() < 1e-8


@pytest.mark.parametrize("out_channels, gradient, weight, rank", [(2, 14, 14, 25), (1, 9, 8, 17)])
def test_rank_counts_on_hand_checked_layers(out_channels, gradient, weight, rank):
    """Conv 3x3, stride 2, padding 1 on a 1x5x5 input (3x3 outputs). Padded rows 0..6; offsets
    0 and 2 read the even rows {2, 4}, offset 1 the odd rows {1, 3, 5}. Per residue class
    (rows x cols) the gradient rank is min(pixels, offsets x rank(k)), rank(k) = min(O, 9):
    O = 2: 4 + 4 + 4 + 2 = 14; O = 1: 4 + 2 + 2 + 1 = 9. Weight constraints: 9*O outputs less
    the O*rank(k) implied by the gradient: 18 - 4 = 14, 9 - 1 = 8."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, out_channels, 3, stride=2, padding=1, bias=False), nn.LeakyReLU(0.2),
                          nn.Flatten(), nn.Linear(9 * out_channels, 1, bias=False))
    row = rank_analysis(model, input_shape=(1, 5, 5)).layers[0]
    assert (row.unknowns, row.gradient_constraints, row.weight_constraints) == (25, gradient, weight)
    assert row.closed_form_index == 25 - gradient - weight and row.numerical_rank == rank
    assert (row.weights, row.outputs, row.virtual_constraints) == (9 * out_channels, 9 * out_channels, 0)


def test_rank_fully_connected_and_virtual_constraints():
    """FC: the gradient alone fixes the input (|x| constraints), its weight constraints add none.
    A first layer with 18 outputs for 12 inputs hands 6 virtual constraints to the next."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 18, bias=False), nn.LeakyReLU(0.2), nn.Linear(18, 3, bias=False))
    report = rank_analysis(model, input_shape=(12,))
    first, head = report.layers
    assert (first.unknowns, first.gradient_constraints, first.weight_constraints, first.ra_index) == (12, 12, 0, 0)
    assert (head.unknowns, head.virtual_constraints, head.ra_index) == (18, 6, -6)
    assert report.full_rank and report.closed_form_full_rank and report.index == 0
    assert json.loads(json.dumps(report.to_json()))["layers"][0]["numerical_rank"] == 12


def test_cnn6_full_rank_cnn6d_deficient_by_count():
    from gradleak.models import build_model

    six = rank_analysis(build_model("cnn6", input_shape=(3, 32, 32), num_classes=1), input_shape=(3, 32, 32), numerical=False)
    narrow = rank_analysis(build_model("cnn6d", input_shape=(3, 32, 32), num_classes=1), input_shape=(3, 32, 32), numerical=False)
    assert six.closed_form_full_rank and six.full_rank
    assert not narrow.closed_form_full_rank and narrow.critical_layer == "body.1.layer"
    assert narrow.layers[1].closed_form_index == 280  # = the numerical deficiency (3468 - 3188)
    assert narrow.layers[1].paper_index < 0  # the paper's raw count would have missed it
    assert six.verdict.startswith("full recovery possible") and narrow.verdict.startswith("R-GAP cannot recover")


def test_twin_data_gives_the_same_gradients():
    model, shape = _net("fc-nobias-leaky-logistic")
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        label = int(model(x.unsqueeze(0))[0, 0] > 0)  # correctly classified: mu > 0 has a twin
    twin = twin_data(model, x=x, label=label)
    assert twin.mu > 0 and abs(twin.twin_mu - twin.mu) > 1e-3 and abs(other_margin(twin.twin_mu) - twin.mu) < 1e-9
    g, gt = _gradients(model, x, label), _gradients(model, twin.twin, label)
    for name in g:
        assert torch.allclose(g[name], gt[name], rtol=1e-10, atol=1e-14)
    assert (twin.twin - x).abs().max() > 1e-3
    # R-GAP sees both readings fit exactly and says the choice is ambiguous
    inversion = invert(model, gradients=g, input_shape=shape)
    assert inversion.ambiguous and len(inversion.readings) == 2
    found = sorted(inversion.readings, key=lambda r: r.branch.mu)
    targets = sorted([x, twin.twin], key=lambda t: float(t.sum()) * (1 if twin.scale > 1 else -1))
    assert min((found[0].x - t.reshape(-1)).abs().max() for t in targets) < 1e-8
    with pytest.raises(GradleakError, match="no twin"):
        twin_data(model, x=x, label=1 - label)


@pytest.mark.parametrize("layer, name", [(nn.ReLU(), "ReLU"), (nn.MaxPool2d(2), "MaxPool2d"), (nn.BatchNorm2d(4), "BatchNorm2d")])
def test_unsupported_layers_are_named(layer, name):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), layer, nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 1, 4, 4))
    with pytest.raises(GradleakError, match=rf"layer '1' \({name}\)"):
        rank_analysis(model.eval(), input_shape=(1, 4, 4))


def test_rgap_attack_on_observation_and_batches():
    obs, truth = make_observation(model="cnn6")  # digits 8x8, single-channel, untrained CNN6
    rec = create_attack("rgap").run(obs)
    assert float(((rec.inputs - truth.inputs) ** 2).mean()) < 1e-8
    assert rec.labels.tolist() == truth.labels.tolist() and len(rec.restart_traces) == len(rec.restart_losses)
    obs3, _ = make_observation(model="cnn6", batch_size=3)
    rec3 = create_attack("rgap", precision="float32").run(obs3)
    assert rec3.inputs.shape[0] == 3 and "linear combination" in rec3.notes[0]
    with pytest.raises(GradleakError, match="precision"):
        create_attack("rgap", precision="float16")


def test_hgap_picks_the_smoother_reconstruction():
    flat = torch.full((1, 1, 6, 6), 0.5)
    noisy = flat + 0.1 * torch.randn((1, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    assert float(smoothness(flat)) < 1e-12 < float(smoothness(noisy))
    obs, truth = make_observation(model="cnn6")
    rec = create_attack("hgap", optimiser="ig", iterations=1).run(obs)  # one IG step: still noise
    assert rec.notes[0].startswith("sample 0: rgap chosen") and rec.chosen_restart == 0
    assert float(((rec.inputs - truth.inputs) ** 2).mean()) < 1e-8 and len(rec.restart_losses) == 2
    with pytest.raises(GradleakError, match="optimiser"):
        create_attack("hgap", optimiser="rgap")


def test_rank_cli(capsys, tmp_path):
    assert main(["rank", "--model", "fcn3", "--input-shape", "1,4,4", "--json", "--out", str(tmp_path / "r")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["full_rank"] and [r["unknowns"] for r in report["layers"]] == [16, 1000, 100]
    assert (tmp_path / "r" / "rank.png").is_file() and (tmp_path / "r" / "rank.json").is_file()
    assert main(["rank", "--model", "cnn6d", "--input-shape", "3,32,32", "--no-numerical"]) == 0
    assert "R-GAP cannot recover the input exactly" in capsys.readouterr().out
    for bad, message in ((["--input-shape", "3,x"], "--input-shape"), (["--model", "nope"], "unknown model 'nope'"),
                         (["--model", "convnet"], "BatchNorm2d")):
        args = {"--model": "cnn6", "--input-shape": "3,8,8"}
        args.update(dict(zip(bad[::2], bad[1::2])))
        assert main(["rank", *[t for kv in args.items() for t in kv], "--no-numerical"]) == 2
        assert message in capsys.readouterr().err
