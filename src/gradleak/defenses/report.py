"""Outputs of a defense evaluation: markdown table and the privacy-utility frontier plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

COLUMNS = (
    ("defense", "defense", "{}"),
    ("client_accuracy", "client acc.", "{:.3f}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("mse", "MSE", "{:.4f}"),
    ("attacker_accuracy", "attacker acc.", "{:.3f}"),
    ("epsilon", "ε (training)", "{:.2f}"),
    ("rero_success", "identified (of n)", "{:.2f}"),
    ("rero_bound", "DP bound", "{:.3f}"),
    ("attack", "strongest attack", "{}"),
)
# Shown when some row has them: the attacker's own pick, and the non-adaptive attacker on the same updates.
OPTIONAL_COLUMNS = (
    ("feature_accuracy", "feature acc. (records)", "{:.3f}"),
    ("baseline_feature_accuracy", "blind guess (records)", "{:.3f}"),
    ("confidence_q4_accuracy", "confident quarter acc.", "{:.3f}"),
    ("pick_feature_accuracy", "attacker's pick feature acc.", "{:.3f}"),
    ("non_adaptive_feature_accuracy", "non-adaptive feature acc.", "{:.3f}"),
    ("pick_psnr", "attacker's pick PSNR", "{:.2f}"),
    ("pick_ssim", "attacker's pick SSIM", "{:.3f}"),
    ("non_adaptive_psnr", "non-adaptive PSNR", "{:.2f}"),
    ("non_adaptive_ssim", "non-adaptive SSIM", "{:.3f}"),
    ("non_adaptive_attacker_accuracy", "non-adaptive attacker acc.", "{:.3f}"),
)


def columns(rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, str, str], ...]:
    """The table's columns: the fixed ones some row fills (records have no PSNR), then each optional one."""
    fixed = tuple(c for c in COLUMNS if c[0] in ("defense", "client_accuracy", "attack")
                  or any(r.get(c[0]) is not None for r in rows))
    extra = tuple(c for c in OPTIONAL_COLUMNS if any(r.get(c[0]) is not None for r in rows))
    return fixed + extra


# the frontier's privacy axis: PSNR for images, feature accuracy for records (whichever the rows carry)
AXES = (("psnr", "attack PSNR (dB, lower = more private)"),
        ("feature_accuracy", "attack feature accuracy (lower = more private)"))


def privacy_axis(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    return next((a for a in AXES if any(r.get(a[0]) is not None for r in rows)), AXES[0])


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    text = fmt.format(value)
    std = row.get(f"{key}_std")
    return f"{text} ± {fmt.format(std).lstrip()}" if std else text


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per defense; ``mean ± std`` over the attacked updates where there are several."""
    cols = columns(rows)
    head = "| " + " | ".join(title for _, title, _ in cols) + " | attacker knowledge |"
    rule = "|" + "---|" * (len(cols) + 1)
    lines = [head, rule]
    for r in rows:
        cells = [_cell(r, key, fmt) for key, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + f" | {r.get('attacker_knowledge', '')} |")
    return "\n".join(lines) + "\n"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (psnr, accuracy) points no other point beats on both (lower PSNR and higher accuracy),
    by increasing PSNR."""
    front: list[tuple[float, float]] = []
    for p in sorted(points, key=lambda q: (q[0], -q[1])):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front


def save_frontier_plot(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Client accuracy against attack PSNR, one labelled point per defense setting (the defender's
    worst case), with the attacker's own pick (hollow square) and the non-adaptive attacker (x) where
    the rows carry them.

    Lower-right is bad (leaks and costs accuracy); the upper-left points are the useful ones.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..report.plots import _atomic_write

    bounded = [r for r in rows if r.get("rero_mu") is not None and r.get("rero_success") is not None]
    fig = Figure(figsize=(11.6 if bounded else 6.4, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2 if bounded else 1, 1)
    metric, xlabel = privacy_axis(rows)
    points = [r for r in rows if r.get(metric) is not None and r.get("client_accuracy") is not None]
    for i, r in enumerate(sorted(points, key=lambda q: q[metric])):
        ax.errorbar(r[metric], r["client_accuracy"], xerr=r.get(f"{metric}_std") or 0.0, fmt="o", capsize=3)
        ax.annotate(r["defense"], (r[metric], r["client_accuracy"]), textcoords="offset points",
                    xytext=(5, 5 if i % 2 == 0 else -12), fontsize="small")  # alternate: neighbours do not overlap
    for key, marker, label in ((f"pick_{metric}", "s", "attacker's pick"),
                               (f"non_adaptive_{metric}", "x", "non-adaptive attacker")):
        shown = [r for r in points if r.get(key) is not None]
        for r in shown:  # joined to the row's worst case: how far the attacker's own choice / ignorance falls short
            ax.plot([r[key], r[metric]], [r["client_accuracy"]] * 2, color="grey", linewidth=0.6)
        if shown:
            ax.plot([r[key] for r in shown], [r["client_accuracy"] for r in shown], marker, color="grey",
                    fillstyle="none", label=label)
    front = pareto_front([(r[metric], r["client_accuracy"]) for r in points])
    if len(front) > 1:
        ax.step(*zip(*front), where="post", color="grey", linestyle="--", linewidth=1, label="frontier (non-dominated)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    ax.set(xlabel=xlabel, ylabel="client test accuracy",
           title=title or "privacy-utility frontier")
    ax.grid(True, alpha=0.3)
    if bounded:
        _bound_panel(fig.add_subplot(1, 2, 2), bounded)
    fig.tight_layout()
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100))


MU_AXIS = 8.0  # widest mu axis of the bound panel


def _bound_panel(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Measured identification success of the Gaussian-DP rows against the ReRo bound curve."""
    from .rero import rero_bound

    kappa = rows[0]["rero_kappa"]
    top = min(MU_AXIS, max(4.0, 1.2 * max(r["rero_mu"] for r in rows)))  # past ~6 the bound is 1 anyway
    mus = [top * i / 200 for i in range(201)]
    ax.plot(mus, [rero_bound(kappa=kappa, mu=m) for m in mus], color="black", label=f"DP bound (κ = {kappa:.2f})")
    ax.axhline(kappa, color="grey", linestyle=":", linewidth=1, label="chance")
    for r in rows:
        mu, label = r["rero_mu"], r["defense"]
        if mu > top:  # drawn at the edge, its mu in the label
            mu, label = top, f"{label} (μ = {r['rero_mu']:.3g})"
        ax.plot(mu, r["rero_success"], "o", color="red" if r.get("rero_violation") else "tab:blue")
        ax.annotate(label, (mu, r["rero_success"]), textcoords="offset points", xytext=(-5, 5), ha="right",
                    fontsize="small")
    ax.set(xlabel="μ of the attacked release (Gaussian DP)", ylabel="identification success",
           ylim=(0, 1.02), title="measured vs bound")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, alpha=0.3)
