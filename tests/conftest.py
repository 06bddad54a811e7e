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
