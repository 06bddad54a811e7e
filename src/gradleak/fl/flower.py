"""Flower integration: a strategy wrapper that audits client updates for leakage.

``LeakageAudit(strategy, auditor=FlowerAuditor(...))`` wraps any Flower strategy of the
Message API (``flwr.serverapp.strategy.Strategy``), the way Flower's own DP wrappers do: it
remembers the global arrays each round sends out, and when the replies come back it hands
chosen clients' updates to the auditor, then forwards the very same replies to the wrapped
strategy, so aggregation is exactly what it would have been. The auditor builds an
:class:`Observation` (update = w_client - w_global, the FedAvg update of gradleak's protocol),
runs an attack and writes per-round leakage under its output folder: ``leakage.jsonl`` (one
line per attacked update), ``round_XXX/client_N/`` (the standard attack outputs, picture
included) and ``report.html`` (refreshed after every round). An auditor failure is logged
and recorded, never raised: training always goes on. For the legacy ``aggregate_fit`` API
see :mod:`gradleak.fl.flower_legacy`.

Needs the ``flower`` extra (``pip install 'gradleak[flower]'``); imported lazily.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from ..errors import GradleakError
from ..models.base import ModelSpec
from ..observation import GroundTruth, Observation
from .protocol import Protocol

try:
    from flwr.serverapp.strategy import Strategy as _FlowerStrategy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("gradleak.fl.flower needs Flower: pip install 'gradleak[flower]'") from exc

LOG = logging.getLogger("gradleak.flower")
TruthFn = Callable[[int, int, dict[str, Any]], "GroundTruth | None"]  # (round, node id, reply metrics) -> truth
SCALARS = ("psnr", "ssim", "mse", "label_accuracy", "seconds", "gradient_loss")


@dataclass
class AuditConfig:
    """What the auditor attacks, and how (the server's knowledge of the deployment)."""

    model: ModelSpec  # the global model's architecture (the server built it)
    out: str | Path  # folder for leakage.jsonl, round_XXX/client_N/ and report.html
    protocol: Protocol = field(default_factory=lambda: Protocol(name="fedavg"))  # the clients' local training
    attack: str = "idlg"  # attack registry name; iDLG is the fast, strong default at small batches
    attack_options: dict[str, Any] = field(default_factory=dict)  # attack config overrides
    rounds: tuple[int, ...] | None = None  # rounds to attack (1-based); None = every round
    node_ids: tuple[int, ...] | None = None  # only these clients' updates; None = any client
    max_clients: int | None = 1  # clients attacked per round (in reply order); None = all; attacks cost time
    seed: int = 0  # attack randomness
    arrays_key: str = "arrays"  # ArrayRecord key of the replies (Flower's FedAvg default)
    num_examples_key: str = "num-examples"  # metric the clients report their sample count under
    data: dict[str, Any] = field(default_factory=lambda: {"kind": "image", "min": 0.0, "max": 1.0})  # public data domain
    truth_fn: TruthFn | None = None  # evaluation only (simulations): the client's true batch, for metrics
    report: bool = True  # rewrite report.html after every audited round


@dataclass
class ClientUpdate:
    """One client's reply, in framework-neutral terms (the Message and legacy APIs both map to it)."""

    node_id: int
    state: Callable[[], dict[str, torch.Tensor]]  # the client's new weights (read lazily: may fail)
    num_samples: int | None  # samples behind the update, as the client reported
    metrics: dict[str, Any]  # everything else the client reported


class FlowerAuditor:
    """Turns (global weights, client reply) into an Observation, attacks it, writes the outcome."""

    def __init__(self, config: AuditConfig) -> None:
        from ..attacks import create_attack
        from ..models import complete_spec, create_model

        self.config = config
        self.spec = complete_spec(config.model)
        self.attack = create_attack(config.attack, **config.attack_options)  # bad names fail at set-up
        model = create_model(self.spec)
        self.param_names = [k for k, _ in model.named_parameters()]
        self.buffer_names = [k for k, _ in model.named_buffers()]
        self.state_names = list(model.state_dict())  # the order legacy Flower ships ndarrays in
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = []

    def wants(self, server_round: int) -> bool:
        return self.config.rounds is None or server_round in self.config.rounds

    def observation(self, global_state: dict[str, torch.Tensor], client_state: dict[str, torch.Tensor],
                    num_samples: int) -> Observation:
        """What the server learns from one reply, in gradleak's terms."""
        missing = [k for k in self.param_names if k not in global_state or k not in client_state]
        if missing:
            raise GradleakError(f"reply arrays lack parameter(s) {missing[:3]} of model {self.spec.name!r}")
        return Observation(
            model=self.spec,
            parameters={k: global_state[k].float().clone() for k in self.param_names},
            buffers={k: global_state[k].clone() for k in self.buffer_names if k in global_state},
            train_mode=False, protocol=self.config.protocol,
            update={k: (client_state[k].float() - global_state[k].float()) for k in self.param_names},
            num_samples=int(num_samples), data=dict(self.config.data),
        )

    def audit(self, server_round: int, node_id: int, observation: Observation, metrics: dict[str, Any]) -> dict[str, Any]:
        """Attack one client's update; writes round_XXX/client_N/ and returns its scalar metrics."""
        from ..outdir import atomic_directory
        from ..runner import evaluate, run_attack, write_attack_outputs

        truth = self.config.truth_fn(server_round, node_id, metrics) if self.config.truth_fn else None
        reconstruction = run_attack(observation, attack=self.attack, seed=self.config.seed, show_progress=False)
        result = evaluate(reconstruction, truth, observation=observation)
        target = self.out / f"round_{server_round:03d}" / f"client_{node_id}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(target) as tmp:
            config = {"command": "flower-audit", "round": server_round, "node_id": node_id,
                      "attack": self.config.attack, "options": self.config.attack_options, "seed": self.config.seed}
            write_attack_outputs(tmp, config=config, metrics=result, reconstruction=reconstruction, truth=truth,
                                 observation=observation)
        return {k: result.get(k) for k in SCALARS}

    def chosen(self, clients: Sequence[ClientUpdate]) -> list[ClientUpdate]:
        ids = self.config.node_ids
        picked = [c for c in clients if ids is None or c.node_id in ids]
        return picked if self.config.max_clients is None else picked[: self.config.max_clients]

    def audit_clients(self, server_round: int, global_state: dict[str, torch.Tensor],
                      clients: Sequence[ClientUpdate]) -> None:
        """Audit the chosen clients of a round; each failure is logged and recorded, not raised."""
        from ..sweep.journal import Journal

        journal = Journal(self.out / "leakage.jsonl")
        for client in self.chosen(clients):
            record: dict[str, Any] = {"cell": f"round{server_round}-node{client.node_id}", "round": server_round,
                                      "node_id": client.node_id, "attack": self.config.attack}
            try:
                if client.num_samples is None:
                    raise GradleakError(f"reply has no {self.config.num_examples_key!r} metric")
                observation = self.observation(global_state, client.state(), int(client.num_samples))
                record.update(status="ok", num_samples=int(client.num_samples),
                              metrics=self.audit(server_round, client.node_id, observation, client.metrics))
            except Exception as exc:  # noqa: BLE001 - the auditor must never stop training
                LOG.warning("gradleak auditor failed on round %d, node %d: %s", server_round, client.node_id, exc)
                record.update(status="error", error=f"{exc.__class__.__name__}: {exc}",
                              traceback=traceback.format_exc(limit=3))
            journal.append(record)
            self.records.append(record)
        if self.config.report:
            try:
                from .flower_report import write_flower_report

                write_flower_report(self.out, journal.records, attack=self.config.attack, model=self.spec.name)
            except Exception as exc:  # noqa: BLE001 - a report problem must not stop training either
                LOG.warning("gradleak auditor could not write its report: %s", exc)

    def audit_round(self, server_round: int, global_state: dict[str, torch.Tensor], replies: list[Any]) -> None:
        """Message API replies -> :meth:`audit_clients`."""
        self.audit_clients(server_round, global_state, [self._from_message(r) for r in replies if r.has_content()])

    def _from_message(self, reply: Any) -> ClientUpdate:
        metrics: dict[str, Any] = {}
        for record in reply.content.metric_records.values():
            metrics.update(dict(record))
        key = self.config.arrays_key
        num = metrics.get(self.config.num_examples_key)
        return ClientUpdate(node_id=int(reply.metadata.src_node_id), metrics=metrics,
                            num_samples=None if num is None else int(num),
                            state=lambda: reply.content[key].to_torch_state_dict())


class LeakageAudit(_FlowerStrategy):
    """Wraps a Flower strategy; taps client updates for the auditor, aggregation untouched."""

    def __init__(self, strategy: _FlowerStrategy, *, auditor: FlowerAuditor) -> None:
        self.strategy = strategy
        self.auditor = auditor
        self._global: dict[int, dict[str, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"LeakageAudit({self.strategy!r})"

    def summary(self) -> None:
        LOG.info("gradleak leakage audit: attack %s on rounds %s", self.auditor.config.attack,
                 self.auditor.config.rounds or "all")
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays, config, grid) -> Iterable[Any]:
        if self.auditor.wants(server_round):
            try:  # a private copy: the strategy may reuse or free its record
                self._global[server_round] = {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}
            except Exception as exc:  # noqa: BLE001
                LOG.warning("gradleak auditor could not record round %d's global arrays: %s", server_round, exc)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Any]):
        replies = list(replies)
        global_state = self._global.pop(server_round, None)
        if global_state is not None:
            try:
                self.auditor.audit_round(server_round, global_state, replies)
            except Exception as exc:  # noqa: BLE001 - never stop training
                LOG.warning("gradleak auditor failed on round %d: %s", server_round, exc)
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays, config, grid) -> Iterable[Any]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Any]):
        return self.strategy.aggregate_evaluate(server_round, replies)
