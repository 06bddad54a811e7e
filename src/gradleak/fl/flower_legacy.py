"""The legacy Flower API (``configure_fit`` / ``aggregate_fit``): the same audit, older servers.

``LegacyLeakageAudit(strategy, auditor=FlowerAuditor(...))`` wraps any
``flwr.server.strategy.Strategy``. Legacy Flower ships a model as a list of arrays in the
order of the model's ``state_dict``; the auditor maps them back to names by that order, so
the audited model must be the one the server trains. Results are forwarded unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .flower import ClientUpdate, FlowerAuditor

try:
    from flwr.common import parameters_to_ndarrays
    from flwr.server.strategy import Strategy as _LegacyStrategy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("gradleak.fl.flower_legacy needs Flower: pip install 'gradleak[flower]'") from exc

LOG = logging.getLogger("gradleak.flower")


def named_state(auditor: FlowerAuditor, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Legacy ndarrays (state_dict order) -> named tensors; a count mismatch is refused."""
    names = auditor.state_names
    if len(arrays) != len(names):
        from ..errors import GradleakError

        raise GradleakError(f"the update has {len(arrays)} arrays but model {auditor.spec.name!r} has {len(names)} "
                            "state_dict entries")
    return {k: torch.from_numpy(np.array(a, copy=True)) for k, a in zip(names, arrays)}


class LegacyLeakageAudit(_LegacyStrategy):
    """Wraps a legacy Flower strategy; audits fit results before forwarding them unchanged."""

    def __init__(self, strategy: _LegacyStrategy, *, auditor: FlowerAuditor) -> None:
        super().__init__()
        self.strategy = strategy
        self.auditor = auditor
        self._global: dict[int, dict[str, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"LegacyLeakageAudit({self.strategy!r})"

    def initialize_parameters(self, client_manager):
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(self, server_round: int, parameters, client_manager):
        if self.auditor.wants(server_round):
            try:
                self._global[server_round] = named_state(self.auditor, parameters_to_ndarrays(parameters))
            except Exception as exc:  # noqa: BLE001 - never stop training
                LOG.warning("gradleak auditor could not record round %d's parameters: %s", server_round, exc)
        return self.strategy.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results, failures):
        global_state = self._global.pop(server_round, None)
        if global_state is not None:
            try:
                clients = [self._from_fit(proxy, res) for proxy, res in results]
                self.auditor.audit_clients(server_round, global_state, clients)
            except Exception as exc:  # noqa: BLE001
                LOG.warning("gradleak auditor failed on round %d: %s", server_round, exc)
        return self.strategy.aggregate_fit(server_round, results, failures)

    def _from_fit(self, proxy: Any, res: Any) -> ClientUpdate:
        try:
            node = int(proxy.cid)
        except (TypeError, ValueError):
            node = abs(hash(str(proxy.cid))) % 10**9
        return ClientUpdate(node_id=node, num_samples=int(res.num_examples), metrics=dict(res.metrics or {}),
                            state=lambda: named_state(self.auditor, parameters_to_ndarrays(res.parameters)))

    def configure_evaluate(self, server_round: int, parameters, client_manager):
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round: int, results, failures):
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters):
        return self.strategy.evaluate(server_round, parameters)
