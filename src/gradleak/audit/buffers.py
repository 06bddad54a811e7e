"""Whether the BatchNorm buffers clients return leak their batch statistics (an audit finding).

No attack is needed: a train-mode client that sends its updated running statistics back gives
each layer's batch mean and variance away in closed form (:mod:`gradleak.fl.bn_stats`).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..fl.bn_stats import batchnorm_layers, buffers_reveal_batch
from ..observation import Observation


def buffer_leak(observations: Sequence[Observation]) -> dict[str, Any]:
    """``{"batchnorm", "train_mode", "shared", "reveals", "local_steps"}`` over the audit's client rounds."""
    if not observations:
        return {"batchnorm": False, "train_mode": False, "shared": False, "reveals": False, "local_steps": []}
    first = observations[0]
    return {
        "batchnorm": bool(batchnorm_layers(first.build_model())),
        "train_mode": first.train_mode,
        "shared": first.buffers_shared,
        "reveals": any(buffers_reveal_batch(sent=o.buffers, returned=o.updated_buffers) for o in observations),
        "local_steps": sorted({o.protocol.local_steps(o.num_samples) for o in observations}),
    }


def buffer_findings(leak: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """(findings, actions) about returned BatchNorm buffers; nothing for models without BatchNorm."""
    if not leak or not leak["batchnorm"]:
        return [], []
    if leak["reveals"]:
        steps = leak["local_steps"]
        exact = ("exactly (one local step per round)" if steps == [1] else
                 f"as one momentum-weighted mixture of the {', '.join(map(str, steps))} local steps' statistics")
        return ([f"The BatchNorm buffers clients return reveal every BatchNorm layer's batch mean and variance "
                 f"{exact}: the server reads them off the buffers without any attack, and attacks use them as a "
                 f"prior (R_BN)."],
                ["Do not send BatchNorm running statistics back with the update (keep them local, as FedBN does), "
                 "or aggregate them under secure aggregation before the server sees them."])
    if leak["train_mode"] and not leak["shared"]:
        return (["Clients were simulated keeping their BatchNorm buffers. If yours return their whole state_dict, "
                 "re-run with --share-buffers: in train mode those buffers reveal each layer's batch statistics."], [])
    return (["BatchNorm runs in eval mode on the clients: returned buffers do not move, so they reveal nothing "
             "about the batch."] if leak["shared"] else [], [])
