"""The report's reconstruction pictures, each labelled with what the attacker recovered.

Every grid says, above it, whether the attack recovered anything by the attacker's own check
(:mod:`.recovery`), with the defender's measurement (PSNR, SSIM against the private images)
beside it, and names its setting (batch size, seed, model state). Images are enlarged by a
whole factor of at least 4 (:mod:`gradleak.report.grid`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..report.grid import save_image_grid
from ..report.html import HtmlReport
from .recovery import attacker_call, headline

MAX_ROWS = 8  # samples shown per picture (a batch of 16 would make a very tall image)


def shown_batches(sizes: list[int], iterative_max: int | None) -> list[int]:
    """The smallest batch, the largest at which every attack ran, and the largest."""
    if not sizes:
        return []
    middle = max((b for b in sizes if iterative_max is None or b <= iterative_max), default=sizes[0])
    return sorted({sizes[0], middle, sizes[-1]})


def _scores(record: dict[str, Any] | None) -> str:
    if record is None or record.get("psnr") is None:
        return "not scored"
    return f"PSNR {record['psnr']:.1f} dB, SSIM {record['ssim']:.2f}"


def reconstruction_pictures(page: HtmlReport, tmp: Path, *, result: dict[str, Any],
                            pictures: dict[int, dict[str, torch.Tensor]], model_state: str) -> None:
    """One labelled grid per shown batch size (first seed), private images left, the pick framed."""
    records = result["attacks"]["records"]
    limit = (result.get("budget") or {}).get("iterative_max_batch")
    for b in shown_batches(sorted(pictures), limit):
        seed = min(r["seed"] for r in records if r["batch_size"] == b)
        round_records = [r for r in records if r["batch_size"] == b and r["seed"] == seed]
        full = {n: t for n, t in pictures[b].items() if n != "truth"}
        call = attacker_call(batch_size=b, records=round_records, pictures=full)
        scored = [r for r in round_records if r.get("ssim") is not None]
        best = max(scored, key=lambda r: r["ssim"], default=None)
        pick = next((r for r in round_records if r.get("chosen")), None)
        columns = {("private" if n == "truth" else n): t[:MAX_ROWS] for n, t in pictures[b].items()}
        notes = {n: ("attacker's pick" if pick and n == pick["attack"] else "") for n in columns}
        grid = save_image_grid(columns, tmp / f"reconstructions_batch{b}.png",
                               highlight=pick["attack"] if pick else None, notes=notes)
        defender = f"the pick ({pick['attack']}): {_scores(pick)}" if pick else "no pick"
        if best is not None and (pick is None or best["attack"] != pick["attack"]):
            defender += f"; best attack ({best['attack']}): {_scores(best)}"
        shown = f"the first {MAX_ROWS} of {b} images" if b > MAX_ROWS else f"{b} image{'s' if b > 1 else ''}"
        page.grid(grid.path, width=grid.width, height=grid.height, scale=grid.scale,
                  call=f"Batch size {b}: {headline(call)}.",
                  call_detail=f"By the attacker's own check: {call.evidence}. Defender's measurement (with the "
                              f"private images): {defender}.",
                  call_class=call.state,
                  caption=f"Batch size {b}, seed {seed}, {model_state} ({shown}, each pixel drawn {grid.scale}x): "
                          "the private images (left) and each attack's reconstruction matched to them; framed in "
                          "red, the attacker's pick (lowest update mismatch).")


def defense_picture(page: HtmlReport, tmp: Path, *, rows: list[dict[str, Any]], truth: torch.Tensor,
                    reconstructions: list[torch.Tensor], recommended: str | None, setting: str) -> None:
    """The defense sweep's first victim(s) under each defense: defender's measurement per column."""
    shown = min([len(truth), MAX_ROWS] + [len(r) for r in reconstructions])
    columns = {"private": truth[:shown]}
    columns.update({r["defense"]: rec[:shown] for r, rec in zip(rows, reconstructions)})
    notes = {r["defense"]: ("" if r.get("ssim") is None else f"SSIM {r['ssim']:.2f}") for r in rows}
    grid = save_image_grid(columns, tmp / "defense_reconstructions.png", highlight=recommended, notes=notes)
    broken = [r["defense"] for r in rows if r.get("ssim") is not None and r["ssim"] >= 0.6 and r["defense"] != "none"]
    base = next((r for r in rows if r["defense"] == "none"), None)
    open_ = base is not None and base.get("ssim") is not None and base["ssim"] >= 0.6
    call = (f"Images recovered under {', '.join(broken)}" if broken else
            ("Images recovered without a defense, under none of the defenses" if open_ else
             "No column shows a recognisable image"))
    page.grid(grid.path, width=grid.width, height=grid.height, scale=grid.scale, call=call + " (defender's measurement).",
              call_class="yes" if broken else ("some" if open_ else "no"),
              call_detail="The sweep keeps one reconstruction per defense, so the attacker's own check (agreement "
                          "between attacks) is not available here; SSIM per column is the mean over the sweep's "
                          "updates.",
              caption=f"Defense sweep ({setting}): private images (left) and the stronger attack's reconstruction "
                      f"under each defense, each pixel drawn {grid.scale}x (framed: the recommended defense).")
