"""The Flower auditor's ``report.html``: leakage per round and client, with the pictures.

Rewritten after every audited round from ``leakage.jsonl`` (so it is current while training
runs); self-contained like every gradleak report (images embedded, no scripts, no URLs).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_flower_report(out: str | Path, records: Sequence[dict[str, Any]], *, attack: str, model: str) -> Path:
    """Write ``out/report.html`` (and ``out/leakage_by_round.png``) atomically; returns the HTML path."""
    from ..report.charts import save_series_plot
    from ..report.html import HtmlReport

    out = Path(out)
    ok = [r for r in records if r.get("status") == "ok"]
    per_round: dict[int, list[float]] = defaultdict(list)
    for r in ok:
        if r["metrics"].get("psnr") is not None:
            per_round[r["round"]].append(r["metrics"]["psnr"])
    series = {}
    if per_round:
        rounds = sorted(per_round)
        series["best client"] = (rounds, [max(per_round[k]) for k in rounds], None)
        series["mean over clients"] = (rounds, [sum(per_round[k]) / len(per_round[k]) for k in rounds], None)
    plot = out / "leakage_by_round.png"
    save_series_plot(series, plot, title=f"{attack} against {model}: PSNR per round", xlabel="FL round",
                     ylabel="PSNR (dB)", log2_x=False, size=(560, 360))
    page = HtmlReport(f"gradleak Flower audit: {model}")
    page.heading(f"Flower leakage audit: {model}, attack {attack}", level=1)
    best = max(ok, key=lambda r: r["metrics"].get("psnr") or -1.0, default=None)
    if best is not None and best["metrics"].get("psnr") is not None:
        level = "high" if (best["metrics"].get("ssim") or 0) >= 0.6 else "medium" if (best["metrics"].get("ssim") or 0) >= 0.3 else "low"
        page.verdict(level, f"Worst update so far: round {best['round']}, client {best['node_id']}: PSNR "
                            f"{best['metrics']['psnr']:.1f} dB, SSIM {_fmt(best['metrics'].get('ssim'))}.",
                     [f"{len(ok)} update(s) attacked, {len(records) - len(ok)} audit failure(s); training was not "
                      "affected either way."])
    else:
        page.verdict("unknown", "No scored reconstruction yet.",
                     ["Metrics need the clients' true batches (AuditConfig.truth_fn, simulations only); "
                      "reconstructions are still written per client."])
    page.image(plot, caption="PSNR of the reconstructions per round (needs truth_fn for scoring).")
    page.heading("Attacked updates")
    page.table(["round", "client", "samples", "status", "PSNR (dB)", "SSIM", "label acc.", "seconds"],
               [[r["round"], r["node_id"], r.get("num_samples", "-"), r["status"] if r["status"] == "ok" else r.get("error", ""),
                 _fmt(r.get("metrics", {}).get("psnr")), _fmt(r.get("metrics", {}).get("ssim"), 3),
                 _fmt(r.get("metrics", {}).get("label_accuracy")), _fmt(r.get("metrics", {}).get("seconds"), 1)]
                for r in records])
    pictures = [(out / f"round_{r['round']:03d}" / f"client_{r['node_id']}" / "reconstruction.png",
                 f"round {r['round']}, client {str(r['node_id'])[:6]}…: PSNR {_fmt(r['metrics'].get('psnr'), 1)} dB")
                for r in ok]
    pictures = [(path, caption) for path, caption in pictures if path.is_file()]
    if pictures:
        page.heading("Reconstructions")
        page.paragraph("Each picture: the client's private batch on top (simulations only) and the reconstruction "
                       "from its update below.", css="muted")
        page.images(pictures, compact=True)
    tmp = out / ".report.html.tmp"
    page.write(tmp)
    os.replace(tmp, out / "report.html")
    return out / "report.html"
