"""Shared fixtures: tiny, fast scenarios (8x8 digits, LeNet) so the suite fits the CI budget."""

from __future__ import annotations

import pytest
import torch

from gradleak.fl.protocol import Protocol
from gradleak.scenario import Scenario, simulate


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.set_num_threads(2)
    yield


def make_observation(**overrides):
    scenario = Scenario(**{"dataset": "digits", "model": "lenet", "batch_size": 1, "seed": 0, **overrides})
    return simulate(scenario)


@pytest.fixture
def digits_observation():
    return make_observation()


@pytest.fixture
def fedavg_observation():
    return make_observation(protocol=Protocol(name="fedavg", lr=0.1, local_epochs=2))


# One real audit (LeNet on 8x8 digits, R-GAP and IG at batch 1 and 2, two defenses, ~15 s), shared
# by test_audit.py and test_report_page.py instead of running it once per module.
TINY_AUDIT = ["audit", "--dataset", "digits", "--budget", "quick", "--batch-sizes", "1", "2", "--attacks", "rgap",
              "ig", "--defenses", "none", "noise:0.01", "--quiet", "--workers", "2"]


@pytest.fixture(scope="session")
def tiny_audit_dir(tmp_path_factory):
    from gradleak.cli import main

    out = tmp_path_factory.mktemp("audit") / "run"
    assert main([*TINY_AUDIT, "--out", str(out)]) == 0
    return out
