"""The verdict box's words: what was found and what to do, without the field's vocabulary.

The person who acts on an audit (a hospital's engineer, its data-protection officer) should not
need to know what SSIM, R-GAP or an update mismatch is to read the box; the detail sections
below it carry the technical findings, each term linked to the glossary. Every number here
names the setting it was measured in (model state, images per update), because the same
attack scores differently on a first-round model and on a trained one.
"""

from __future__ import annotations

from typing import Any, Sequence

from .verdict import EXACT_SHARE, Thresholds, _safe_batch, recommend_defense


def signed_points(change: float | None) -> str:
    """An accuracy change in percentage points, sign first: ``-3.7 points`` (a loss), ``+0.4 points``."""
    if change is None:
        return "n/a"
    points = round(change * 100, 1)
    return "no change" if points == 0 else f"{points:+.1f} points"


def model_state(settings: dict[str, Any]) -> str:
    """The audited global model's state in words (the attack battery's setting)."""
    steps = settings.get("trained_steps") or 0
    return ("the untrained model of the first training round" if not steps
            else f"the model after {steps} steps of pre-training")


def sweep_state(rows: Sequence[dict[str, Any]], config: dict[str, Any] | None) -> str:
    """The defense sweep's setting in words: the trained model, how many updates of how many images."""
    rounds = len(rows[0].get("accuracy_history") or []) if rows else 0
    rounds = rounds or ((config or {}).get("federated") or {}).get("rounds") or 0
    per = rows[0].get("samples_per_update") if rows else None
    victims = rows[0].get("victims") if rows else None
    model = f"the model after {rounds} training rounds" if rounds else "the trained model"
    if per is None:
        return model
    updates = f"{victims} update{'s' if victims != 1 else ''}" if victims else "updates"
    return f"{model}, {updates} of {per} image{'s' if per != 1 else ''}"


def _how(ssim: float) -> str:
    if ssim >= 0.95:
        return "exactly"
    if ssim >= Thresholds.high_ssim:
        return "recognisably"
    if ssim >= Thresholds.medium_ssim:
        return "in outline (its layout and structures)"
    return "not recognisably"


def describe_defense(spec: str) -> str:
    """A defense spec (``prune:0.9``) as a person would say it."""
    name, _, value = spec.partition(":")
    try:
        x = float(value) if value else None
    except ValueError:
        x = None
    if name in ("prune", "prune-global") and x is not None:
        return f"each update keeps only its largest {100 - 100 * x:.0f}% of values, the rest set to zero"
    if name in ("noise", "laplace"):
        return "random noise is added to every update" + (f", strength {value}" if value else "")
    if name == "clip":
        return "every update's size is capped"
    if name == "dpsgd":
        return "differentially private training" + (f", noise level {value}" if value else "")
    if name == "secagg":
        return "several hospitals' updates are summed before the server sees them"
    if name == "perturb":
        return "a learned distortion of the data inside the model"
    return "see the section 'Defenses'"


def plain_verdict(result: dict[str, Any]) -> dict[str, list[str]]:
    """``{"findings": [...], "actions": [...]}`` in plain words, from a ``results.json`` dictionary."""
    v, s = result["verdict"], result["settings"]
    th = Thresholds(**v.get("thresholds", {}))
    attacks = result["attacks"]
    curve, worst = attacks["attacker_choice"], attacks.get("worst_case", [])
    findings: list[str] = []
    if curve and curve[0].get("ssim") is not None:
        first, n = curve[0], curve[0]["seeds"]
        images = "a single image" if first["batch_size"] == 1 else f"{first['batch_size']} images"
        findings.append(
            f"From an update of {images}, the attacker rebuilt the private image {_how(first['ssim'])} "
            f"(similarity {first['ssim']:.2f}, where 1 means identical; {model_state(s)}, average of {n} "
            f"trial{'s' if n != 1 else ''}). It chose its best attempt without seeing any patient data.")
    labels = result.get("labels") or []
    if labels:
        low = min(r["accuracy"] for r in labels)
        sizes = [r["batch_size"] for r in labels]
        share = "every" if low >= 0.995 else f"at least {low * 100:.0f}% of"
        findings.append(f"The class of {share} image (for medical data often the diagnosis) was read from the updates, "
                        f"for updates of {sizes[0]} to {sizes[-1]} images.")
    safe = _safe_batch(worst, th)
    if len(worst) > 1:
        if safe is None:
            findings.append(f"Larger updates did not help: at {worst[-1]['batch_size']} images per update the best "
                            "attempt still showed the images' layout.")
        elif safe > worst[0]["batch_size"]:
            findings.append(f"From {safe} images per update on, no attempt showed even the images' layout (judged "
                            "afterwards with the private images).")
    exact = _exact_batches(attacks.get("summary", []))
    if exact:
        findings.append(f"For this model, whole updates of up to {exact} images were read out exactly, each image "
                        "confirmed by the attacker itself.")
    bad = _malicious(result.get("malicious"))
    if bad:
        findings.append(bad[0])
    from .buffers import buffer_findings  # the same words: there is no plainer way to say it

    buffer_notes, buffer_actions = buffer_findings(result.get("buffers"))
    findings += buffer_notes
    return {"findings": findings, "actions": _actions(result, th, safe, exact, bad) + buffer_actions}


def _exact_batches(summary: Sequence[dict[str, Any]]) -> int | None:
    working = [r["batch_size"] for r in summary
               if r.get("certified_fraction") is not None and r["certified_fraction"] >= EXACT_SHARE]
    return max(working) if working and max(working) > 1 else None


def _malicious(stage: dict[str, Any] | None) -> tuple[str, str] | None:
    if not stage or not stage.get("rows"):
        return None
    summed = [r for r in stage["rows"] if r["clients"] > 1] or stage["rows"]
    worst = max(summed, key=lambda r: r["exact_fraction"] or 0.0)
    if not (worst["exact_fraction"] or 0) > 0:
        return None
    caught = all(r["inspect_refuses"] for r in stage["rows"])
    largest = max(summed, key=lambda r: r["samples"])
    also = (f", and still {(largest['exact_fraction'] or 0) * 100:.0f}% of {largest['samples']}"
            if largest is not worst else "")
    finding = (f"A server that tampers with the model it sends read out exactly {worst['exact_fraction'] * 100:.0f}% "
               f"of {worst['samples']} images{also}, although it only saw the sum of {worst['clients']} hospitals' "
               "updates.")
    action = ("Have every hospital check each model it receives before training on it, with the command "
              "'gradleak inspect --model-file F' (" + ("it caught every tampered model here" if caught else
                                                       "it missed some tampered models here") +
              "). Summing several hospitals' updates does not stop a server that tampers with the model.")
    return finding, action


def _actions(result: dict[str, Any], th: Thresholds, safe: int | None, exact: int | None,
             bad: tuple[str, str] | None) -> list[str]:
    level = result["verdict"]["level"]
    worst = result["attacks"].get("worst_case", [])
    actions = []
    if level in ("high", "medium"):
        actions.append("Do not train on patient data with this set-up until a protection is in place.")
    if exact:
        actions.append(f"Larger updates do not protect this model (up to {exact} images were read out exactly): use "
                       "differentially private training, or a model whose first layer is not a wide fully connected "
                       "one, then audit again.")
    if bad:
        actions.append(bad[1])
    actions += _defense_action(result, th)
    if level in ("high", "medium") and safe is not None and worst and safe > worst[0]["batch_size"]:
        actions.append(f"Where hospitals can, have each update cover at least {safe} images (no attempt here then "
                       "showed the images' layout; stronger attacks may).")
    if level == "low":
        actions.append("No attack here rebuilt recognisable images. This is evidence, not proof: run the thorough "
                       "audit (--budget thorough) before deployment.")
    else:
        actions.append("Run the thorough audit (--budget thorough) for the report you file.")
    return actions


def _defense_action(result: dict[str, Any], th: Thresholds) -> list[str]:
    d = result.get("defenses") or {}
    rows = d.get("rows") or []
    base = next((r for r in rows if r["defense"] == "none"), None)
    if base is None or base.get("ssim") is None:
        return []
    where = sweep_state(rows, d.get("config"))
    if base["ssim"] < th.medium_ssim:
        return [f"The test of protections ({where}) could not break even the unprotected model, so it cannot "
                "rank them: run the thorough audit (--budget thorough)."]
    pick = recommend_defense(rows, th)
    if pick is None:
        return [f"No protection tested kept the attacks out for at most {th.max_accuracy_cost * 100:.0f} points of "
                "accuracy: see the section 'Defenses' for the trade-offs."]
    change = None if pick.get("accuracy_cost") is None else -pick["accuracy_cost"]
    return [f"Turn on the protection '{pick['defense']}' ({describe_defense(pick['defense'])}). In the test of protections "
            f"({where}) the similarity of the attacker's best reconstruction fell from {base['ssim']:.2f} to "
            f"{pick['ssim']:.2f}, and the shared model's accuracy went from {base['client_accuracy']:.3f} to "
            f"{pick['client_accuracy']:.3f} (accuracy {signed_points(change)})."]
