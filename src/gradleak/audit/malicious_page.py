"""The report's malicious-server section (numbers from :mod:`.malicious`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..report.grid import save_image_grid
from ..report.html import HtmlReport


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def malicious_section(page: HtmlReport, tmp: Path, stage: dict[str, Any],
                      picture: dict[str, torch.Tensor] | None, *, exact_rule: str = "PSNR >= 60 dB") -> None:
    if not stage["rows"]:
        page.paragraph(f"Not measured: {stage.get('skipped')}.", css="muted")
        return
    page.paragraph(
        "Threat model 'malicious': the server controls the architecture and weights of the model it sends. Here it "
        f"puts an imprint block (Robbing the Fed, Fowl et al. 2022: {stage['bins']} rows that all measure one "
        "statistic of the input, with thresholds at quantiles of that statistic on the server's own public data) in "
        "front of your model. Clients train on it as usual; the server reads every sample that was alone in its bin "
        "out of the update in closed form - and a sum of updates (secure aggregation) is read like a single one. "
        f"Public data: {stage['client_split']}.")
    page.table(["batch per client", "clients (secure aggregation)", "samples N", f"recovered exactly ({exact_rule})",
                "attacker-certified", "expected (1 - 1/bins)^(N-1)", "gradleak inspect"],
               [[r["batch_size"], r["clients"] if r["clients"] > 1 else "1 (none)", r["samples"],
                 _pct(r["exact_fraction"]), _pct(r["certified_fraction"]), _pct(r["expected"]),
                 "refuses the model" if r["inspect_refuses"] else "does not notice"] for r in stage["rows"]],
               highlight=[r["clients"] > 1 for r in stage["rows"]])
    if stage.get("skipped"):
        page.paragraph(f"Not measured: {stage['skipped']}.", css="muted")
    if picture is not None:
        grid = save_image_grid(picture, tmp / "malicious_reconstructions.png")
        summed = [r for r in stage["rows"] if r["clients"] > 1] or stage["rows"]
        row = summed[-1]  # the picture comes from the largest measured round
        n, certified = row["samples"], round((row["certified_fraction"] or 0) * row["samples"])
        state = "yes" if certified >= n / 2 else ("some" if certified else "no")
        what = {"yes": "Attack recovered the images", "some": "Attack recovered some images",
                "no": "Attack recovered nothing recognisable"}[state]
        page.grid(grid.path, width=grid.width, height=grid.height, scale=grid.scale, call_class=state,
                  call=f"{what}.",
                  call_detail=f"By the attacker's own check: imprint certifies {certified} of {n} samples as read out "
                              f"exactly. Defender's measurement (with the private images): "
                              f"{_pct(row['exact_fraction'])} recovered exactly (PSNR >= 60 dB).",
                  caption=f"Batch {row['batch_size']} per client, {row['clients']} client(s) ({n} samples): the first "
                          f"private samples (left) and what the server read out of the update, matched to them, each "
                          f"pixel drawn {grid.scale}x (mixed bins are not recoveries).")
    page.paragraph(
        f"Your model as an honest server would send it, checked by gradleak inspect: {stage['audited_model_inspect']}. "
        "The check looks for layers whose rows copy one direction with a ladder of biases; it cannot see crafted "
        "layers built otherwise (different directions per row, several layers), so it lowers the risk but does not "
        "remove it: client-side differential privacy does not depend on spotting the crafting.", css="muted")
