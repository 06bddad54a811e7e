"""The verdict of an audit of health records (tables, time series): what leaked, against a blind guess.

An image score has a natural zero (SSIM of a blind guess is ~0); a record score does not: a
guess made without the update (the attacker's column means, most frequent categories, flags
rounded) already gets many variables "right" (most observation masks are 0). Every record score
is therefore read as an *advantage* over that blind guess, the share of what the guess misses
that the attack recovers: ``(accuracy - blind) / (1 - blind)``, 0 for no leakage, 1 for exact
records. The level is read off the reconstruction the attacker chose (lowest update mismatch;
no ground truth in the choice) at the smallest batch, as for images. The attacker's own
confidence (tableak) matters at large batches: the quarter of values it is surest of is often
right even when the batch as a whole is not, and the attacker knows which quarter that is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from .verdict import LEVELS, exact_recovery


@dataclass(frozen=True)
class RecordThresholds:
    high_advantage: float = 0.6  # at or above, records are largely reconstructed (high risk)
    medium_advantage: float = 0.3  # at or above, a sizeable share of the values leaks (medium risk)
    # the attacker's most confident quarter of values this far above the blind guess on those values:
    # a quarter of every record leaks, and the attacker knows which quarter (at least medium risk)
    confident_advantage: float = 0.6
    label_leak: float = 0.9  # share of labels recovered at which labels count as leaked (at least medium)
    max_accuracy_cost: float = 0.05  # a defense costing more client accuracy than this is not recommended


def advantage(accuracy: float | None, blind: float | None) -> float | None:
    """Share of what a blind guess gets wrong that ``accuracy`` gets right (None when undefined)."""
    if accuracy is None or blind is None or blind >= 1.0:
        return None
    return (accuracy - blind) / (1.0 - blind)


def confident_advantage(row: dict[str, Any]) -> float | None:
    """The advantage on the attacker's most confident quarter of values (attacks that state confidence)."""
    return advantage(row.get("confidence_q4_accuracy"), row.get("confidence_q4_baseline"))


def level_of(adv: float | None, confident: float | None, labels: float | None, th: RecordThresholds) -> str:
    if adv is None:
        return "unknown"
    if adv >= th.high_advantage:
        return "high"
    if adv >= th.medium_advantage or (confident is not None and confident >= th.confident_advantage) or (
            labels is not None and labels >= th.label_leak):
        return "medium"
    return "low"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _kinds(row: dict[str, Any]) -> str:
    parts = [f"{name} {_pct(row.get(key))}" for name, key in (("continuous", "continuous_accuracy"),
                                                               ("categorical", "categorical_accuracy"),
                                                               ("binary", "mask_accuracy")) if row.get(key) is not None]
    return ", ".join(parts)


def _safe_batch(worst: Sequence[dict[str, Any]], th: RecordThresholds) -> int | None:
    """Smallest tested batch size from which every larger one stays below the medium advantage."""
    safe = None
    for r in reversed(worst):
        adv = advantage(r.get("feature_accuracy"), r.get("baseline_feature_accuracy"))
        if adv is None or adv >= th.medium_advantage:
            break
        safe = r["batch_size"]
    return safe


def _batch_finding(worst: Sequence[dict[str, Any]], th: RecordThresholds) -> str | None:
    if len(worst) < 2:
        return None
    cases = ", ".join(f"{_pct(r['feature_accuracy'])} at {r['batch_size']} ({r['attack']}; blind guess "
                      f"{_pct(r.get('baseline_feature_accuracy'))})" for r in worst)
    head = ("Defender's worst case - the best attack per batch size, scored with the private records, which the "
            f"attacker cannot do by itself: feature accuracy {cases}. ")
    safe = _safe_batch(worst, th)
    if safe is None:
        return head + (f"Larger batches alone do not help: at the largest tested batch size ({worst[-1]['batch_size']}) "
                       f"the attack still recovers at least {th.medium_advantage * 100:.0f}% of what a blind guess "
                       "misses.")
    if safe == worst[0]["batch_size"]:
        return head + "At no tested batch size did it recover a medium share of the records."
    return head + (f"From batch size {safe} on it recovers less than {th.medium_advantage * 100:.0f}% of what a "
                   "blind guess misses.")


def _confidence_finding(curve: Sequence[dict[str, Any]], th: RecordThresholds) -> tuple[str | None, int | None]:
    """(finding, largest batch size at which the confident quarter leaks) for attacks that state confidence."""
    rows = [r for r in curve if r.get("confidence_q4_accuracy") is not None]
    if not rows:
        return None, None
    cells = ", ".join(f"{_pct(r['confidence_q4_accuracy'])} right at batch {r['batch_size']} (blind guess on the same "
                      f"values {_pct(r.get('confidence_q4_baseline'))})" for r in rows)
    leaking = [r["batch_size"] for r in rows if (confident_advantage(r) or 0.0) >= th.confident_advantage]
    tail = (f" Even where the whole batch is not recovered, the values the attacker is surest of leak, and it knows "
            f"which they are (up to batch size {max(leaking)})." if leaking else "")
    return (f"The attacker's own confidence (agreement of its ensemble): the quarter of values it is most sure of is "
            f"{cells}.{tail}"), (max(leaking) if leaking else None)


def recommend_defense(rows: Sequence[dict[str, Any]], th: RecordThresholds) -> dict[str, Any] | None:
    """The cheapest tested defense whose worst-case attack stays below the medium advantage at an
    affordable accuracy cost, or None. Rows carry ``accuracy_cost`` (protection.with_cost)."""
    safe = [r for r in rows if r["defense"] != "none" and r.get("accuracy_cost") is not None
            and r["accuracy_cost"] <= th.max_accuracy_cost
            and (advantage(r.get("feature_accuracy"), r.get("baseline_feature_accuracy")) or 0.0) < th.medium_advantage
            and r.get("feature_accuracy") is not None]
    return min(safe, key=lambda r: (r["accuracy_cost"], r["feature_accuracy"])) if safe else None


def _defense_actions(rows: Sequence[dict[str, Any]], th: RecordThresholds) -> list[str]:
    base = next((r for r in rows if r["defense"] == "none"), None)
    if not rows or base is None:
        return ["No defense sweep was run (--defenses none). DP-SGD (client-level clipping and noise) is the defense "
                "with a guarantee; measure its cost on your task (gradleak defend) before use."]
    base_adv = advantage(base.get("feature_accuracy"), base.get("baseline_feature_accuracy"))
    if base_adv is not None and base_adv < th.medium_advantage:
        return [f"The defense sweep's attacks did not break even the undefended trained model (feature accuracy "
                f"{_pct(base.get('feature_accuracy'))}, blind guess {_pct(base.get('baseline_feature_accuracy'))}), "
                "so it cannot rank the defenses; re-run with --budget thorough."]
    pick = recommend_defense(rows, th)
    if pick is None:
        return [f"No tested defense kept the attack below {th.medium_advantage * 100:.0f}% of what a blind guess misses "
                f"for at most {th.max_accuracy_cost * 100:.0f} points of client accuracy; see the defense table."]
    cost = pick["accuracy_cost"] * 100
    knows = f" (it knows: {pick['attacker_knowledge']})" if pick.get("attacker_knowledge") else ""
    return [f"Apply {pick['defense']}: in the defense sweep (the trained model, updates of "
            f"{pick.get('samples_per_update', '?')} record(s)) the attack's feature accuracy fell from "
            f"{_pct(base.get('feature_accuracy'))} undefended to {_pct(pick['feature_accuracy'])} (blind guess "
            f"{_pct(pick.get('baseline_feature_accuracy'))}), and the federated model's accuracy went from "
            f"{base['client_accuracy']:.3f} to {pick['client_accuracy']:.3f} "
            f"({'no change' if round(cost, 1) == 0 else f'{-cost:+.1f} points'}). Tested against an adaptive "
            f"{pick.get('attack', 'attack')} attacker{knows}."]


def record_verdict(*, curve: Sequence[dict[str, Any]], worst: Sequence[dict[str, Any]] = (),
                   labels: Sequence[dict[str, Any]], rank: dict[str, Any], summary: Sequence[dict[str, Any]] = (),
                   malicious: dict[str, Any] | None = None, model_state: str | None = None,
                   thresholds: RecordThresholds = RecordThresholds(), defenses: Sequence[dict[str, Any]] = (),
                   **_ignored: Any) -> dict[str, Any]:
    """``{"level", "title", "headline", "findings", "actions", "recommended_defense", "thresholds"}`` for records."""
    th = thresholds
    first = curve[0] if curve else {}
    label_worst = labels[0]["accuracy"] if labels else None
    adv = advantage(first.get("feature_accuracy"), first.get("baseline_feature_accuracy"))
    level = level_of(adv, confident_advantage(first), label_worst, th)
    confidence, confident_limit = _confidence_finding(curve, th)
    if level == "low" and confident_limit is not None:
        level = "medium"
    findings: list[str] = []
    if first:
        findings.append(
            f"Smallest batch ({first['batch_size']}{', ' + model_state if model_state else ''}, mean of "
            f"{first.get('seeds', 1)} seed(s)): the reconstruction the attacker trusts most "
            f"({', '.join(first['attacks'])}, picked by how well it reproduces the update, without seeing any data) "
            f"gets {_pct(first.get('feature_accuracy'))} of the variables right ({_kinds(first)}; continuous values "
            f"within 0.1 standard deviations); a blind guess from the attacker's own column statistics gets "
            f"{_pct(first.get('baseline_feature_accuracy'))}, so the update gives away {_pct(adv)} of what the guess "
            "misses.")
    if label_worst is not None:
        findings.append("Labels (the outcome the model predicts, e.g. in-hospital death) are recovered from the update "
                        "alone: " + ", ".join(f"{r['accuracy'] * 100:.0f}% at batch size {r['batch_size']}"
                                              for r in labels) + ".")
    batch = _batch_finding(worst, th)
    if batch:
        findings.append(batch)
    if confidence:
        findings.append(confidence)
    exact = exact_recovery(summary, rank)
    if exact:
        findings.append(exact[0])
    from .malicious import malicious_findings

    bad_server, bad_server_actions = malicious_findings(malicious, exact_rule="equal to the private record")
    findings += bad_server
    actions: list[str] = []
    if level in ("high", "medium"):
        actions.append("Do not train on patient records with this configuration until a defense is in place.")
    if exact and exact[1]:
        actions.append(exact[1])
    actions += bad_server_actions
    safe = _safe_batch(worst, th)
    if level in ("high", "medium") and safe is not None and safe > worst[0]["batch_size"]:
        if confident_limit is not None and confident_limit >= safe:
            actions.append(f"Larger batches reduce the leak but do not remove it: from {safe} records per update the "
                           f"attacks recovered less than {th.medium_advantage * 100:.0f}% of what a blind guess misses, "
                           f"yet the values the attacker was surest of still leaked at batch {confident_limit}.")
        else:
            actions.append(f"Where clients can, have each update cover at least {safe} records (every attack here "
                           f"then recovered less than {th.medium_advantage * 100:.0f}% of what a blind guess misses; "
                           "stronger attacks may do better).")
    actions += _defense_actions(defenses, th)
    if level == "low":
        actions.append("No attack here recovered a medium share of the records; this is evidence, not proof. Re-run "
                       "with --budget thorough before deployment.")
    else:
        actions.append("Re-run with --budget thorough for the report you file.")
    headline = {
        "high": "A curious server can reconstruct patients' records from a single client update.",
        "medium": "Client updates leak part of patients' records (or their outcomes), and the attacker knows which part.",
        "low": "No attack of this audit recovered a medium share of the records from the client updates.",
        "unknown": "No attack produced a usable result; see the errors in the attack table.",
    }[level]
    return {"level": level, "title": LEVELS[level], "headline": headline, "findings": findings, "actions": actions,
            "recommended_defense": None if (pick := recommend_defense(defenses, th)) is None else pick["defense"],
            "thresholds": asdict(th)}
