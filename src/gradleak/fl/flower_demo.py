"""A real Flower simulation on gradleak's embedded data, audited by :class:`LeakageAudit`.

Used by ``examples/flower_audit/`` and the tests. Each virtual hospital (SuperNode) holds a
disjoint shard of the dataset and, every round, trains the global model on one batch with
plain PyTorch SGD (the FedAvg client of gradleak's ``fedavg`` protocol) and sends its new
weights back. The server runs Flower's FedAvg wrapped in ``LeakageAudit``. Which batch a
client used is re-derived on the server only to score reconstructions (``truth_fn``): the
attack itself never sees it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..observation import GroundTruth


@dataclass
class DemoConfig:
    """The simulated federation (small defaults: it runs inside the test suite)."""

    out: str  # audit output folder
    dataset: str = "histology"  # embedded data, no download
    image_size: int | None = None  # None = the dataset's default (histology: 28 px)
    model: str = "lenet"  # the DLG LeNet: small, and the classic undefended victim
    num_clients: int = 2  # virtual SuperNodes
    num_rounds: int = 2  # FL rounds
    batch_size: int = 1  # samples per client batch per round
    local_lr: float = 0.1  # client SGD learning rate (one local epoch on its batch)
    samples_per_client: int = 16  # size of each client's private shard
    seed: int = 0  # model init and shard assignment
    attack: str = "idlg"  # what the auditor runs
    attack_options: dict[str, Any] = field(default_factory=dict)  # attack config overrides
    audit_rounds: tuple[int, ...] | None = None  # None = audit every round
    audit_clients: int | None = None  # clients attacked per round; None = all
    verbose: bool = False  # keep Flower's and Ray's INFO/DEBUG console lines (default: warnings only)


@lru_cache(maxsize=4)
def _dataset(name: str, image_size: int | None):
    from ..data import load_dataset

    return load_dataset(name, data_root=None, image_size=image_size, grayscale=False)


def client_batch(cfg: dict[str, Any], *, partition: int, server_round: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch partition ``partition`` trains on in ``server_round`` (disjoint shards)."""
    data = _dataset(cfg["dataset"], cfg["image-size"] or None)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(int(cfg["seed"])))
    shard = order[partition :: int(cfg["num-clients"])][: int(cfg["samples-per-client"])]
    bs = int(cfg["batch-size"])
    start = ((server_round - 1) * bs) % max(1, len(shard) - bs + 1)
    idx = shard[start : start + bs]
    return data.inputs[idx].clone(), data.labels[idx].clone()


def _spec(cfg: dict[str, Any]):
    from ..models import ModelSpec, complete_spec

    data = _dataset(cfg["dataset"], cfg["image-size"] or None)
    return complete_spec(ModelSpec(name=cfg["model"], input_shape=data.input_shape, num_classes=data.num_classes))


def make_client_app():
    """A Flower ClientApp: load global weights, SGD on this round's batch, send weights back."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from ..models import create_model

    app = ClientApp()

    @app.train()
    def train(msg: Message, context) -> Message:
        torch.set_num_threads(1)
        cfg = dict(msg.content["config"])
        partition = int(context.node_config["partition-id"])
        x, y = client_batch(cfg, partition=partition, server_round=int(cfg["server-round"]))
        model = create_model(_spec(cfg))
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        model.eval()  # gradleak's default client mode (no BatchNorm batch statistics)
        optimiser = torch.optim.SGD(model.parameters(), lr=float(cfg["local-lr"]))
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        metrics = MetricRecord({"num-examples": int(x.shape[0]), "train-loss": float(loss), "partition-id": partition})
        content = RecordDict({"arrays": ArrayRecord.from_torch_state_dict(model.state_dict()), "metrics": metrics})
        return Message(content=content, reply_to=msg)

    return app


def _wire_config(config: DemoConfig) -> dict[str, Any]:
    return {"dataset": config.dataset, "image-size": config.image_size or 0, "model": config.model,
            "num-clients": config.num_clients, "batch-size": config.batch_size, "local-lr": config.local_lr,
            "samples-per-client": config.samples_per_client, "seed": config.seed}


def make_server_app(config: DemoConfig):
    """A Flower ServerApp running FedAvg wrapped in :class:`LeakageAudit`."""
    from flwr.app import ArrayRecord, ConfigRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    from ..models import create_model
    from .flower import AuditConfig, FlowerAuditor, LeakageAudit
    from .protocol import Protocol

    wire = _wire_config(config)
    app = ServerApp()

    def truth_fn(server_round: int, _node_id: int, metrics: dict[str, Any]) -> GroundTruth:
        x, y = client_batch({**wire}, partition=int(metrics["partition-id"]), server_round=server_round)
        return GroundTruth(inputs=x, labels=y)

    @app.main()
    def main(grid, context) -> None:
        spec = _spec(wire)
        torch.manual_seed(config.seed)
        model = create_model(spec)
        auditor = FlowerAuditor(AuditConfig(
            model=spec, out=config.out, protocol=Protocol(name="fedavg", lr=config.local_lr),
            attack=config.attack, attack_options=dict(config.attack_options), rounds=config.audit_rounds,
            max_clients=config.audit_clients, seed=config.seed, truth_fn=truth_fn,
            data={"dataset": config.dataset, "kind": "image", "min": 0.0, "max": 1.0},
        ))
        strategy = LeakageAudit(FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=config.num_clients,
                                       min_available_nodes=config.num_clients), auditor=auditor)
        strategy.start(grid=grid, initial_arrays=ArrayRecord.from_torch_state_dict(model.state_dict()),
                       num_rounds=config.num_rounds, train_config=ConfigRecord(wire))

    return app


def quiet_frameworks(*, verbose: bool) -> None:
    """Flower logs every message exchange at INFO/DEBUG on its own handler; keep warnings only."""
    level = logging.INFO if verbose else logging.WARNING
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(level)


def run_demo(config: DemoConfig) -> list[dict[str, Any]]:
    """Run the simulation (local Ray) and return the auditor's leakage records."""
    from flwr.simulation import run_simulation

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    quiet_frameworks(verbose=config.verbose)
    (out / "federation.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    run_simulation(
        server_app=make_server_app(config), client_app=make_client_app(), num_supernodes=config.num_clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False,
                                      **({} if config.verbose else {"logging_level": logging.WARNING})}},
    )
    path = out / "leakage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
