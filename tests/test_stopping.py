"""Stopping rules (issue #18, item 2): searches end when the attacker's own loss stops improving."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks import create_attack
from gradleak.attacks.loop import LoopSettings, Plateau, StopRule, optimise
from gradleak.errors import GradleakError


def _quadratic(target: torch.Tensor, x: torch.Tensor):
    return lambda: (x - target).pow(2).sum()


def test_plateau_judges_progress_over_a_window() -> None:
    plateau = Plateau(StopRule(patience=3, tol=0.1))
    assert not any(plateau.reached(v) for v in (1.0, 0.8, 0.6, 0.4))  # 20 % a step: progress
    # 2 % a step is a slow tail: after a full window, less than 10 % gained -> converged
    assert [plateau.reached(v) for v in (0.392, 0.384, 0.377)] == [False, False, True]
    plateau.reset()  # a new window after a learning-rate change
    assert not plateau.reached(0.376)


def test_patience_zero_never_stops_early() -> None:
    plateau = Plateau(StopRule(patience=0))
    assert not any(plateau.reached(1.0) for _ in range(100))


@pytest.mark.parametrize("bad", [{"patience": -1}, {"patience": 1.5}, {"patience": True}, {"tol": -0.1}, {"tol": 1.0}])
def test_bad_stop_rule_is_refused(bad: dict) -> None:
    with pytest.raises(GradleakError):
        StopRule(**bad)


@pytest.mark.parametrize("bad", [{"patience": -3}, {"tol": 2.0}])
def test_attack_configs_validate_the_rule(bad: dict) -> None:
    for name in ("idlg", "ig"):
        with pytest.raises(GradleakError):
            create_attack(name, **bad)


def test_adam_without_rule_runs_the_fixed_schedule_with_decay() -> None:
    target = torch.linspace(-1, 1, 16)
    x = torch.zeros(16, requires_grad=True)
    settings = LoopSettings(optimizer="adam", iterations=80, lr=0.1, signed=True, step_decay=True)
    trace = optimise(objective=_quadratic(target, x), variables=[x], settings=settings)
    assert len(trace) == 80


def test_adam_stops_on_a_plateau_after_decaying_through_every_stage() -> None:
    # Signed Adam at a fixed rate oscillates around the optimum: a plateau at each stage.
    target = torch.linspace(-1, 1, 16)
    x = torch.zeros(16, requires_grad=True)
    stop = StopRule(patience=15, tol=1e-3)
    settings = LoopSettings(optimizer="adam", iterations=5000, lr=0.1, signed=True, step_decay=True, stop=stop)
    trace = optimise(objective=_quadratic(target, x), variables=[x], settings=settings)
    assert len(trace) < 1000  # stopped long before the budget
    assert trace[-1] < 1e-3  # after the early decays it is close to the optimum


def test_annealed_run_finishes_its_schedule_quickly_after_a_plateau() -> None:
    target = torch.linspace(-1, 1, 16)
    x = torch.zeros(16, requires_grad=True)
    settings = LoopSettings(optimizer="adam", iterations=20000, lr=0.05, anneal="cosine",
                            stop=StopRule(patience=40, tol=1e-3))
    trace = optimise(objective=_quadratic(target, x), variables=[x], settings=settings)
    assert len(trace) < 5000
    assert trace[-1] < 1e-4


def test_lbfgs_stops_when_converged_and_reports_progress_for_the_whole_budget() -> None:
    target = torch.linspace(-1, 1, 16)
    x = torch.zeros(16, requires_grad=True)
    ticks: list[int] = []
    settings = LoopSettings(optimizer="lbfgs", iterations=300, lr=1.0, stop=StopRule(patience=5))
    trace = optimise(objective=_quadratic(target, x), variables=[x], settings=settings, progress=ticks.append)
    assert len(trace) < 20
    assert sum(ticks) == 300  # the progress bar completes
    assert torch.allclose(x.detach(), target, atol=1e-5)


def test_patience_zero_is_accepted_as_an_option_and_runs_the_whole_budget() -> None:
    """README: ``--option patience=0`` runs the whole budget (the validator once refused 0)."""
    from gradleak.scenario import Scenario, simulate

    observation, _ = simulate(Scenario(dataset="digits", model="lenet", batch_size=1))
    recon = create_attack("ig", iterations=12, patience=0).run(observation, generator=torch.Generator().manual_seed(0))
    assert recon.iterations_used == 12
    with pytest.raises(GradleakError, match="patience"):
        create_attack("ig", patience=-1)


def test_a_diverged_search_returns_a_finite_guess_and_says_so(monkeypatch) -> None:
    """A run whose every restart went to NaN (seen: iDLG on a BatchNorm ConvNet) must not end an
    evaluation: the attacker can see the divergence, so it returns the range's midpoint there."""
    import gradleak.attacks.optimisation as optimisation
    from gradleak.attacks.loop import Candidate
    from gradleak.scenario import Scenario, simulate

    observation, _ = simulate(Scenario(dataset="digits", model="lenet", batch_size=1))

    def diverged(self, observation, *, matcher, labels, generator, progress):
        x = torch.full((1, *observation.input_shape), float("nan"))
        return Candidate(x, labels.labels, float("nan"), [float("nan")])

    monkeypatch.setattr(optimisation.OptimisationAttack, "search", diverged)
    recon = create_attack("idlg", iterations=3).run(observation, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(recon.inputs).all() and any("diverged" in n for n in recon.notes)


def test_lbfgs_line_search_is_validated_and_keeps_a_badly_scaled_problem_finite():
    from gradleak.attacks.loop import LoopSettings, optimise

    with pytest.raises(GradleakError, match="line search"):
        LoopSettings(optimizer="lbfgs", iterations=1, lr=1.0, line_search="armijo")
    scales = torch.logspace(0, 6, 20, dtype=torch.float64)  # curvature over six orders of magnitude
    final = {}
    for search in (None, "strong_wolfe"):  # a Charbonnier sum, like the smoothed temporal TV; minimum 20 at 0
        x = torch.ones(20, dtype=torch.float64, requires_grad=True)
        trace = optimise(objective=lambda: (1 + scales * x.square()).sqrt().sum(), variables=[x],
                         settings=LoopSettings(optimizer="lbfgs", iterations=5, lr=1.0, line_search=search))
        final[search] = trace[-1]
    # torch's fixed step of 1 diverges (measured 1.9e141); the searched step descends (measured 35.5, from 3280)
    assert final[None] > 1e100 and 20 <= final["strong_wolfe"] < 100, final
