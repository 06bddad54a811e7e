"""The latent-decoder attack (#19: against the latent perturbation, a decoder the attacker trains)."""

from __future__ import annotations

import torch

from gradleak.attacks import create_attack
from gradleak.attacks.latent_decoder import head_code
from gradleak.models.base import classifier_layer
from gradleak.scenario import Scenario, simulate


def test_head_code_is_the_true_latent_at_batch_1():
    """dW = delta z^T, db = delta: the code read from the update is the head's input, to float64."""
    observation, truth = simulate(Scenario(dataset="digits", model="lenet", batch_size=1, seed=2))
    model = observation.build_model().eval()
    seen = []
    hook = classifier_layer(model).register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model(truth.inputs)
    hook.remove()
    z, residual, classes = head_code(observation, model)
    assert classes == 10 and residual < 1e-6
    assert torch.allclose(z.float(), seen[0].flatten(), rtol=1e-4, atol=1e-6)


def test_latent_decoder_runs_through_the_cli_on_the_perturbed_model(tmp_path):
    from gradleak.cli import main

    out = tmp_path / "ld"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--attack", "latent-decoder", "--defense",
                 "perturb:1", "--option", "steps=30", "--quiet", "--out", str(out)])
    assert code == 0
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["psnr"] is not None and "decoder" in metrics["attacker_knowledge"]
    # the decoder is trained once per global model: a second victim of the same round reuses it
    attack = create_attack("latent-decoder", steps=5)
    observation, _ = simulate(Scenario(dataset="digits", model="lenet", batch_size=1, seed=0))
    first = attack.run(observation, generator=torch.Generator().manual_seed(0))
    second = attack.run(observation, generator=torch.Generator().manual_seed(1))
    assert len(attack._decoders) == 1 and first.loss_trace == second.loss_trace
