"""The ReRo bound (issue #19): closed forms, monotonicity, the violation check, the defenses' mu."""

from __future__ import annotations

import math

import pytest
import torch

from gradleak.defenses import parse_defense
from gradleak.defenses.report import save_frontier_plot
from gradleak.defenses.rero import (ReRoCheck, binomial_tail, compose_mu, dpsgd_release_mu, gaussian_mu, identified,
                                    rero_bound, subsampled_mu, violations)
from gradleak.errors import GradleakError
from gradleak.fl.protocol import Protocol


def test_closed_forms():
    assert rero_bound(kappa=0.1, mu=0.0) == pytest.approx(0.1)  # no information: the baseline
    assert rero_bound(kappa=0.5, mu=1.0) == pytest.approx(0.841344746, abs=1e-9)  # Phi(1)
    assert rero_bound(kappa=0.5, mu=2.0) == pytest.approx(0.977249868, abs=1e-9)  # Phi(2)
    # kappa = Phi(-1): Phi(-1 + 1) = 1/2
    assert rero_bound(kappa=0.158655254, mu=1.0) == pytest.approx(0.5, abs=1e-8)
    assert rero_bound(kappa=0.1, mu=math.inf) == 1.0 and rero_bound(kappa=1.0, mu=0.3) == 1.0


def test_monotone_in_mu_and_kappa():
    values = [rero_bound(kappa=0.1, mu=m / 4) for m in range(40)]
    assert all(a < b for a, b in zip(values, values[1:])) and values[-1] <= 1.0
    assert rero_bound(kappa=0.05, mu=1.0) < rero_bound(kappa=0.2, mu=1.0)


def test_mu_of_mechanisms():
    assert gaussian_mu(sensitivity=2.0, sigma=4.0) == 0.5 and gaussian_mu(sensitivity=1.0, sigma=0.0) == math.inf
    assert compose_mu(0.5, steps=4) == 1.0
    assert dpsgd_release_mu(noise_multiplier=2.0) == 1.0 and dpsgd_release_mu(noise_multiplier=2.0, steps=9) == 3.0
    assert subsampled_mu(1.0, sample_rate=1.0, steps=4) == 2.0
    assert subsampled_mu(1.0, sample_rate=0.01, steps=100) == pytest.approx(0.01 * math.sqrt(100 * (math.e - 1)))
    mu, how = parse_defense("dpsgd:4").gdp_mu(protocol=Protocol(), candidate_updates=lambda: [])
    assert mu == 0.5 and "replace-one" in how
    fedavg = Protocol(name="fedavg", local_epochs=4)
    assert parse_defense("dpsgd:4").gdp_mu(protocol=fedavg, candidate_updates=lambda: [])[0] == 1.0
    assert parse_defense("prune:0.9").gdp_mu(protocol=Protocol(), candidate_updates=lambda: [])[0] is None
    slot = [{"w": torch.zeros(3)}, {"w": torch.tensor([3.0, 4.0, 0.0])}, {"w": torch.ones(3)}]
    assert parse_defense("noise:0.5").gdp_mu(protocol=Protocol(), candidate_updates=lambda: [slot])[0] == 10.0
    with pytest.raises(GradleakError):
        rero_bound(kappa=0.0, mu=1.0)


def test_identified_needs_strictly_nearest():
    truth = torch.zeros(2, 1, 2, 2)
    others = torch.stack([torch.ones(3, 1, 2, 2), torch.full((3, 1, 2, 2), 0.2)])
    recon = torch.full((2, 1, 2, 2), 0.1)  # sample 0: nearest the truth; sample 1: tie with 0.2
    assert identified(recon, truth, others).tolist() == [True, False]


def test_violation_is_loud_only_when_significant():
    assert binomial_tail(0, 5, 0.3) == pytest.approx(1.0)
    assert binomial_tail(5, 5, 0.5) == pytest.approx(1 / 32)
    fine = ReRoCheck(successes=1, trials=8, kappa=0.1, mu=0.5, method="test")
    assert not fine.violated and fine.bound == pytest.approx(rero_bound(kappa=0.1, mu=0.5))
    noisy = ReRoCheck(successes=2, trials=3, kappa=0.1, mu=0.5, method="test")  # above, but 3 trials
    assert noisy.success > noisy.bound and not noisy.violated
    broken = ReRoCheck(successes=20, trials=20, kappa=0.1, mu=0.5, method="test")
    assert broken.violated
    row = {"defense": "dpsgd:4", **broken.record()}
    assert "BOUND" not in violations([row])[0] and "above the DP bound" in violations([row])[0]
    assert violations([{"defense": "none", **ReRoCheck(successes=3, trials=3, kappa=0.1, mu=None,
                                                          method="none").record()}]) == []


def test_frontier_plot_draws_bound_panel(tmp_path):
    rows = [{"defense": "none", "psnr": 20.0, "client_accuracy": 0.8, "rero_success": 1.0, "rero_mu": None},
            {"defense": "dpsgd:4", "psnr": 8.0, "client_accuracy": 0.6, "rero_success": 0.1, "rero_mu": 0.5,
             "rero_kappa": 0.1, "rero_bound": 0.2}]
    path = save_frontier_plot(rows, tmp_path / "frontier.png")
    assert path.stat().st_size > 1000
