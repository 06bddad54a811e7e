"""The audit's malicious-server section: what a crafted model recovers, with and without secure aggregation.

The server is assumed to control the model it sends (Robbing the Fed's imprint block, bins from
its own split of the data). For every audited batch size B it is measured twice on the audit's
first seed: one client alone, and ``CLIENTS`` clients of B samples each behind secure
aggregation (the server reads the sum). Each row also says whether ``gradleak inspect`` would
have refused the model the clients received; the audited model itself is inspected too (a
false alarm there would make the check useless for this deployment).
"""

from __future__ import annotations

from typing import Any

import torch

from ..malicious import ImprintCraft, inspect_state
from ..malicious.experiment import MaliciousRound, run_round
from ..models import create_model
from ..models.base import ModelSpec
from .settings import AuditSettings

CLIENTS = 8  # clients securely aggregated (the ward-images and crafted profiles' 8)
BINS = 1024  # rows of the crafted imprint block
SHOWN = 8  # samples in the section's picture


def malicious_stage(settings: AuditSettings, spec: ModelSpec, *, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Rows (batch size x {1, CLIENTS} clients), the inspection of the audited model, and a picture's tensors."""
    from ..priors import attacker_data

    from ..data import load_dataset
    from ..errors import GradleakError

    try:
        split = attacker_data(settings.dataset, data_root=settings.data_root, image_size=settings.image_size,
                              grayscale=settings.grayscale)
        pool = len(load_dataset(settings.dataset, data_root=settings.data_root, image_size=settings.image_size,
                                grayscale=settings.grayscale))
    except GradleakError as exc:
        return {"skipped": f"no attacker split of {settings.dataset!r}: {exc}", "rows": [], "_picture": None}
    pool -= 0 if split.client_exclusion is None else len(split.client_exclusion)
    rows, picture, too_big = [], None, []
    for b in sizes:
        for k in (1, CLIENTS):
            if k * b > pool:
                too_big.append(f"{k} x {b}")
                continue
            config = MaliciousRound(dataset=settings.dataset, model=settings.model, clients=k, batch_size=b,
                                    protocol=settings.protocol, craft=ImprintCraft(bins=BINS), seed=settings.seed,
                                    trained_steps=settings.trained_steps, model_options=dict(settings.model_options),
                                    image_size=settings.image_size, grayscale=settings.grayscale,
                                    data_root=settings.data_root)
            r = run_round(config, public=split.data.inputs, exclude=split.client_exclusion)
            truth, recon = r.pop("_truth"), r.pop("_reconstruction")
            if k > 1 or picture is None:
                picture = {"private": truth[:SHOWN], "imprint": recon[:SHOWN]}
            rows.append({"batch_size": b, "clients": k, "samples": r["samples"], "bins": BINS,
                         "exact_fraction": r["exact_fraction"], "certified_fraction": r["certified_fraction"],
                         "expected": r["expected_alone"], "inspect_refuses": r["inspect_alarm"],
                         "seconds": r["attack_seconds"]})
    torch.manual_seed(settings.seed)
    own = inspect_state(create_model(spec).state_dict(), spec=spec)
    skipped = (f"rounds of {', '.join(too_big)} samples exceed the {pool} samples clients may hold"
               if too_big else None)
    return {"clients": CLIENTS, "bins": BINS, "rows": rows, "audited_model_inspect": own.verdict,
            "client_split": split.rule, "skipped": skipped, "_picture": picture}


def malicious_findings(stage: dict[str, Any] | None, *,
                       exact_rule: str = "PSNR >= 60 dB") -> tuple[list[str], list[str]]:
    """(findings, actions) the verdict adds for a malicious server (``exact_rule``: what counts as verbatim)."""
    if not stage or not stage["rows"]:
        return [], []
    agg = [r for r in stage["rows"] if r["clients"] > 1]
    alone = [r for r in stage["rows"] if r["clients"] == 1]
    worst = max(agg or alone, key=lambda r: r["exact_fraction"] or 0.0)
    caught = all(r["inspect_refuses"] for r in stage["rows"])
    one = ", ".join("%.0f%% at batch %d" % ((r["exact_fraction"] or 0) * 100, r["batch_size"]) for r in alone)
    many = ", ".join("%.0f%% of %d" % ((r["exact_fraction"] or 0) * 100, r["samples"]) for r in agg)
    stops = "secure aggregation does not stop it" if (worst["exact_fraction"] or 0) > 0 else \
        "no sample was recovered here, with or without secure aggregation"
    findings = [
        f"Malicious server: a crafted model (imprint block, {stage['bins']} bins) recovers patients' samples verbatim "
        f"({exact_rule}): {one or 'not measured'} from one client, and {many or 'not measured'} through secure "
        f"aggregation of {stage['clients']} clients - {stops}."]
    actions = []
    if (worst["exact_fraction"] or 0) > 0:
        actions.append(
            f"Secure aggregation alone is no protection against a malicious server ({worst['exact_fraction'] * 100:.0f}% "
            f"of {worst['samples']} aggregated samples recovered exactly): have every client check each model it "
            "receives with `gradleak inspect --model-file F` before training"
            + (" (it refused every crafted model here" if caught else " (it missed some crafted models here")
            + f"; your own model: {stage['audited_model_inspect']}), or add client-side DP noise.")
    return findings, actions
