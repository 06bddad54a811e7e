"""The plain verdict an audit leads with: a risk level, one headline, findings, what to do.

The level is read off the reconstruction *the attacker chose* (lowest update mismatch; no
ground truth in the choice), scored afterwards with SSIM, the structural similarity: it is
near 0 for a blind guess whatever the data, whereas PSNR is not (a constant image of the
mean colour scores ~19 dB on the pale histology patches), so PSNR is reported beside the
blind guess's PSNR and never judged alone. Labels count on their own: for medical data the
class is often the diagnosis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Thresholds:
    high_ssim: float = 0.6  # at or above, the private image is visibly reconstructed (high risk)
    medium_ssim: float = 0.3  # at or above, its layout and structures leak (medium risk)
    label_leak: float = 0.9  # share of labels recovered at which labels count as leaked (at least medium)
    max_accuracy_cost: float = 0.05  # a defense costing more client accuracy than this is not recommended


LEVELS = {"high": "High risk", "medium": "Medium risk", "low": "Low risk (in this test)", "unknown": "No verdict"}


def _fmt(mean: float | None, std: float | None, unit: str = "", digits: int = 1) -> str:
    if mean is None:
        return "n/a"
    spread = f" ± {std:.{digits}f}" if std else ""
    return f"{mean:.{digits}f}{spread}{unit}"


def level_of(ssim: float | None, labels: float | None, th: Thresholds) -> str:
    if ssim is None:
        return "unknown"
    if ssim >= th.high_ssim:
        return "high"
    if ssim >= th.medium_ssim or (labels is not None and labels >= th.label_leak):
        return "medium"
    return "low"


def recommend_defense(rows: Sequence[dict[str, Any]], th: Thresholds) -> dict[str, Any] | None:
    """The cheapest tested defense that keeps the attack below the medium threshold at an
    affordable accuracy cost, or None. Rows carry ``accuracy_cost`` (protection.with_cost)."""
    safe = [r for r in rows if r["defense"] != "none" and r.get("ssim") is not None
            and r.get("accuracy_cost") is not None and r["ssim"] < th.medium_ssim
            and r["accuracy_cost"] <= th.max_accuracy_cost]
    return min(safe, key=lambda r: (r["accuracy_cost"], r["ssim"])) if safe else None


def _batch_finding(worst: Sequence[dict[str, Any]], th: Thresholds) -> str | None:
    """How leakage falls with batch size, judged on the defender's worst case (best scored attack)."""
    if len(worst) < 2:
        return None
    cases = ", ".join(f"{r['ssim']:.2f} at {r['batch_size']} ({r['attack']})" for r in worst)
    head = ("Defender's worst case - the best attack per batch size, scored with the private images, which the "
            f"attacker cannot do by itself: SSIM {cases}. ")
    safe = _safe_batch(worst, th)
    if safe is None:
        return head + (f"Larger batches alone do not help: at the largest tested batch size "
                       f"({worst[-1]['batch_size']}) it is still at or above {th.medium_ssim}.")
    if safe == worst[0]["batch_size"]:
        return head + f"No tested batch size reached {th.medium_ssim}."
    return head + f"It stays below {th.medium_ssim} from batch size {safe} on."


def _safe_batch(worst: Sequence[dict[str, Any]], th: Thresholds) -> int | None:
    """Smallest tested batch size from which every larger one stays below the medium threshold."""
    safe = None
    for r in reversed(worst):
        if r["ssim"] >= th.medium_ssim:
            break
        safe = r["batch_size"]
    return safe


def _defense_actions(defenses: Sequence[dict[str, Any]], th: Thresholds) -> list[str]:
    base = next((r for r in defenses if r["defense"] == "none"), None)
    if not defenses or base is None:
        return []
    pick = recommend_defense(defenses, th)
    if base.get("ssim") is not None and base["ssim"] < th.medium_ssim:
        return [f"The defense sweep's attacks did not break even the undefended trained model (SSIM "
                f"{base['ssim']:.2f}), so it cannot rank the defenses; re-run with --budget thorough."]
    if pick is None:
        return [f"No tested defense kept the attack below SSIM {th.medium_ssim} for at most "
                f"{th.max_accuracy_cost * 100:.0f} points of client accuracy; see the defense table and try others."]
    rounds = len(base.get("accuracy_history") or [])
    where = (f"the model after {rounds} FedAvg rounds" if rounds else "the trained model") + (
        f", updates of {base['samples_per_update']} sample(s)" if base.get("samples_per_update") else "")
    cost = pick["accuracy_cost"] * 100
    return [f"Apply {pick['defense']}: in the defense sweep ({where}; not the first-round model of the findings "
            f"above) the attack's SSIM fell from {base['ssim']:.2f} ({base['psnr']:.1f} dB) undefended to "
            f"{pick['ssim']:.2f} ({pick['psnr']:.1f} dB), and the federated model's accuracy went from "
            f"{base['client_accuracy']:.3f} to {pick['client_accuracy']:.3f} (accuracy "
            f"{'no change' if round(cost, 1) == 0 else f'{-cost:+.1f} points'}). {_attacker(pick)}"]


def _attacker(row: dict[str, Any]) -> str:
    """Which attacker a defense row was tested against (adaptive or not), so a recommendation names it."""
    kind = "an adaptive" if row.get("adaptive") else "a non-adaptive"
    knows = f" (it knows: {row['attacker_knowledge']})" if row.get("attacker_knowledge") else ""
    return f"Tested against {kind} {row.get('attack', 'attack')} attacker{knows}."


EXACT_SHARE = 0.5  # an exact attack "works" at a batch size while it certifies at least this share of the batch


def exact_recovery(summary: Sequence[dict[str, Any]], rank: dict[str, Any]) -> tuple[str, str | None] | None:
    """(finding, action) for the exact attacks (those that certify samples, e.g. spear), or None.

    Says at which tested batch size exact recovery stops, judged by the attacker's own certificate,
    and why, from the architecture-only disaggregation analysis.
    """
    rows = [r for r in summary if r.get("certified_fraction") is not None]
    if not rows:
        return None
    attack = rows[0]["attack"]
    rows = sorted((r for r in rows if r["attack"] == attack), key=lambda r: r["batch_size"])
    cells = ", ".join(f"{r['certified_fraction'] * 100:.0f}% certified ({_pct_or_na(r.get('exact_fraction'))} exact) "
                      f"at {r['batch_size']}" for r in rows)
    working = [r["batch_size"] for r in rows if r["certified_fraction"] >= EXACT_SHARE]
    stops = next((r["batch_size"] for r in rows if r["certified_fraction"] < EXACT_SHARE), None)
    split = rank.get("disaggregation") or {}
    why = ""
    if split:
        why = (f" The model's {split['layer']} has {split['width']} units: with independent activations exact "
               f"splitting is expected up to batch {split['expected_limit']} (SPEAR sampling within its budget up to "
               f"{split['sampling_limit']}, units active for a single sample up to {split['peeling_limit']}; impossible "
               f"above {split['rank_limit']}); beyond, too few units are active for one sample only and the sampling "
               "odds fall as 2^-b.")
        if working and max(working) > split["expected_limit"]:
            why += (" Here it went further: correlated activations (non-negative data with a shared brightness) "
                    "leave many units active for a single sample.")
    head = (f"Exact recovery ({attack}: whole samples read out of the update in closed form, each certified by the "
            f"attacker without seeing any data): {cells}.")
    if stops is None:
        finding = head + f" It holds at every tested batch size, up to {rows[-1]['batch_size']}." + why
    else:
        finding = head + f" It stops at batch size {stops}." + why
    action = None
    if working and max(working) > 1:
        action = (f"Batch size is no protection for this model: {attack} recovered whole batches of up to "
                  f"{max(working)} samples exactly. Use DP-SGD, or secure aggregation over enough clients that the "
                  "summed update covers more samples than exact recovery reaches, or a first layer that is not a wide "
                  "fully connected ReLU layer; then re-audit.")
    return finding, action


def _pct_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def verdict(*, curve: Sequence[dict[str, Any]], worst: Sequence[dict[str, Any]] = (),
            labels: Sequence[dict[str, Any]], baseline: float | None,
            rank: dict[str, Any], defenses: Sequence[dict[str, Any]], dataset: str,
            thresholds: Thresholds = Thresholds(), malicious: dict[str, Any] | None = None,
            summary: Sequence[dict[str, Any]] = (), model_state: str | None = None,
            buffers: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"level", "title", "headline", "findings": [...], "actions": [...], "recommended_defense", "thresholds"}``.

    ``model_state`` (e.g. "untrained, first round") is named beside the smallest batch's numbers: the
    defense sweep attacks a trained model and scores differently, so each figure says which model it is.
    """
    th = thresholds
    first = curve[0] if curve else {}
    label_worst = labels[0]["accuracy"] if labels else None
    level = level_of(first.get("ssim"), label_worst, th)
    findings: list[str] = []
    if first:
        blind = f" (a blind guess of the {dataset} data scores {baseline:.1f} dB)" if baseline is not None else ""
        findings.append(
            f"Smallest batch ({first['batch_size']}{', ' + model_state if model_state else ''}, mean of "
            f"{first.get('seeds', 1)} seed(s)): the reconstruction the attacker trusts most "
            f"({', '.join(first['attacks'])}, picked by how well it reproduces the update, without seeing any data) "
            f"has SSIM {_fmt(first['ssim'], first.get('ssim_std'), '', 2)} with the private image (1 = identical) "
            f"and PSNR {_fmt(first['psnr'], first.get('psnr_std'), ' dB')}{blind}.")
    if label_worst is not None:
        findings.append("Labels (for medical data often the diagnosis) are recovered from the update alone: "
                        + ", ".join(f"{r['accuracy'] * 100:.0f}% at batch size {r['batch_size']}" for r in labels) + ".")
    batch = _batch_finding(worst, th)
    if batch:
        findings.append(batch)
    if rank.get("status") == "ok":
        findings.append(f"Rank analysis of the model: {rank['verdict']}.")
    exact = exact_recovery(summary, rank)
    if exact:
        findings.append(exact[0])
    from .malicious import malicious_findings  # the malicious-server section (None when not run)

    bad_server, bad_server_actions = malicious_findings(malicious)
    findings += bad_server
    from .buffers import buffer_findings  # returned BatchNorm buffers (nothing without BatchNorm)

    buffer_notes, buffer_actions = buffer_findings(buffers)
    findings += buffer_notes
    actions: list[str] = []
    if level in ("high", "medium"):
        actions.append("Do not train on patient data with this configuration until a defense is in place.")
    if exact and exact[1]:
        actions.append(exact[1])
    actions += bad_server_actions
    actions += buffer_actions
    actions += _defense_actions(defenses, th)
    safe = _safe_batch(worst, th)
    if level in ("high", "medium") and safe is not None and safe > worst[0]["batch_size"]:
        actions.append(f"Where clients can, have each update cover at least {safe} samples (every attack here then "
                       "stayed below the medium-risk line; stronger attacks may not).")
    if level == "low":
        actions.append("No attack here reconstructed recognisable images; this is evidence, not proof. Re-run "
                       "with --budget thorough (and a generator prior, --prior) before deployment.")
    else:
        actions.append("Re-run with --budget thorough for the report you file.")
    headline = {
        "high": "A curious server can reconstruct patients' training images from a single client update.",
        "medium": "Client updates leak the structure or the labels of patients' data.",
        "low": "No attack of this audit reconstructed recognisable images from the client updates.",
        "unknown": "No attack produced a usable result; see the errors in the attack table.",
    }[level]
    pick = recommend_defense(defenses, th)
    return {"level": level, "title": LEVELS[level], "headline": headline, "findings": findings, "actions": actions,
            "recommended_defense": None if pick is None else pick["defense"], "thresholds": asdict(th)}
