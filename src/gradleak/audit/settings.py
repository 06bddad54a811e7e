"""What an audit examines: the deployment (data, model, protocol) and how hard to look."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..fl.protocol import Protocol
from ..scenario import Scenario
from .budget import Budget, get_budget

SMALL_MODEL = 1_000_000  # parameters below which the audit runs torch single-threaded by default


@dataclass
class AuditSettings:
    """The audited federated setup and the audit's budget (``gradleak audit`` options)."""

    dataset: str = "histology"  # dataset registry name: the embedded histology patches need no download
    # victim model registry name; None = the data kind's default: DLG's LeNet (the classic undefended victim)
    # for images, the MLP for health records
    model: str | None = None
    budget: str = "standard"  # quick | standard | thorough (see gradleak.audit.budget)
    batch_sizes: tuple[int, ...] | None = None  # client batch sizes probed; None = the budget's (records: audit.kinds)
    seeds: int | None = None  # seeds per setting; None = the budget's
    protocol: Protocol = field(default_factory=Protocol)  # what clients share: fedsgd gradient (default) or fedavg
    trained_steps: int = 0  # pre-train the global model (0 = the first round, the attacker's best moment)
    train_mode: bool = False  # clients run BatchNorm in train mode (batch statistics)
    share_labels: bool = False  # clients also share their labels
    share_buffers: bool = False  # clients return their BatchNorm buffers (state_dict) with the update
    image_size: int | None = None  # dataset default when None
    grayscale: bool = False  # convert images to one channel
    data_root: str | None = None  # directory with dataset files (MedMNIST .npz, your CSV)
    model_options: dict[str, Any] = field(default_factory=dict)  # model constructor options
    attacks: list[str] | None = None  # restrict the battery to these attacks; None = every one that applies
    defenses: list[str] | None = None  # defense sweep specs; None = the budget's; [] = no defense sweep
    prior: str | None = None  # generator prior directory: adds the generative attacks (giz, gias)
    seed: int = 0  # first seed; seed k of a setting uses seed + k
    # "malicious": also measure a server that crafts the model (imprint block; seconds); "honest": skip it
    threat: str = "malicious"
    device: str = "cpu"  # where attacks run
    # torch CPU threads; None = 1 for models under SMALL_MODEL parameters (their ops are too small
    # to gain from threads, and idle-spinning threads collapse on a shared machine), torch's default otherwise
    threads: int | None = None
    # processes running the battery's and the sweep's independent runs, one torch thread each (the
    # same records as one process). 1 by default from Python: spawned workers re-import the caller's
    # main module, which a script without an ``if __name__ == "__main__":`` guard would re-run.
    # None = one per available core when the model runs on one thread (the CLI's default)
    workers: int | None = 1

    @property
    def plan(self) -> Budget:
        return get_budget(self.budget)

    def resolved_batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.batch_sizes or self.plan.batch_sizes)))

    def resolved_seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.seeds or self.plan.seeds)]

    def resolved_defenses(self) -> list[str]:
        """The sweep's specs, "none" first: every defense is judged against the undefended row."""
        specs = list(self.plan.defenses if self.defenses is None else self.defenses)
        return specs if not specs or "none" in specs else ["none", *specs]

    def scenario(self, *, batch_size: int, seed: int) -> Scenario:
        """The client round simulated for one (batch size, seed)."""
        return Scenario(
            dataset=self.dataset, model=self.model, batch_size=batch_size, protocol=self.protocol,
            trained_steps=self.trained_steps, train_mode=self.train_mode, share_labels=self.share_labels,
            share_buffers=self.share_buffers, seed=seed, image_size=self.image_size, grayscale=self.grayscale, data_root=self.data_root,
            model_options=dict(self.model_options),
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["protocol"] = self.protocol.to_json()
        d["batch_sizes"] = list(self.resolved_batch_sizes())
        d["seeds"] = self.resolved_seeds()
        d["defenses"] = self.resolved_defenses()
        return d
