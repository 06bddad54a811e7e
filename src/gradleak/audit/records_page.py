"""The ``report.html`` of an audit of health records: verdict first, then what leaked and how.

The image report's structure with record pictures: the attacker's pick as a table a clinician
can read (values in their units, green where right, red where wrong) for flat records, truth /
reconstruction heatmaps for time series; feature accuracy against batch size beside the blind
guess; the attacker's confidence where the attack states one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.schema import RecordSchema
from ..report.charts import save_series_plot
from ..report.html import HtmlReport
from .glossary import ENTRIES, TERMS
from .page_inputs import PageInputs, save_inputs
from .page_pictures import shown_batches
from .plain import model_state
from .records import RecordThresholds, advantage, record_verdict

EXACT_RULE = "equal to the private record"

THREAT_MODEL = [
    "Who attacks: whoever can read an individual client's update - the aggregation server, its operator, or an "
    "intruder on it. It is honest-but-curious: it runs the protocol and does not tamper with the model; a server "
    "that crafts the model is measured in the section 'Malicious server'.",
    "What it knows: the model architecture and the global weights of the round, the training protocol, how many "
    "records the update covers, the column layout of the records (which variables are continuous, categorical or "
    "binary) and per-column statistics of its own records (mean, spread, range) - never the clients'.",
    "What it does not know: the client's records or labels. Labels are recovered analytically from the update; "
    "records by the attacks below.",
    "How results are judged: the attacker keeps, among its attacks, the reconstruction whose simulated update best "
    "matches the observed one (the update mismatch). The private records are used afterwards, only to score: a "
    "variable counts as recovered when a category or flag is right, or a continuous value is within 0.1 of its "
    "standard deviation; the blind guess (the attacker's column means and most frequent categories) is scored the "
    "same way.",
]


def _pm(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def page_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The verdict re-derived from the saved numbers with today's wording."""
    a, s = result["attacks"], result["settings"]
    return record_verdict(curve=a["attacker_choice"], worst=a.get("worst_case", []), labels=result["labels"],
                          rank=result["rank"], summary=a["summary"], malicious=result.get("malicious"),
                          model_state=model_state(s), thresholds=RecordThresholds(**result["verdict"]["thresholds"]),
                          defenses=(result.get("defenses") or {}).get("rows", []))


def _accuracy_plot(tmp: Path, result: dict[str, Any]) -> Path:
    series: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for r in result["attacks"]["summary"]:
        if r.get("feature_accuracy") is not None:
            xs, ms, ss = series.setdefault(r["attack"], ([], [], []))
            xs.append(r["batch_size"]), ms.append(r["feature_accuracy"]), ss.append(r.get("feature_accuracy_std") or 0.0)
    pick = [r for r in result["attacks"]["attacker_choice"] if r.get("feature_accuracy") is not None]
    if pick:
        series["attacker's pick"] = ([r["batch_size"] for r in pick], [r["feature_accuracy"] for r in pick],
                                     [r.get("feature_accuracy_std") or 0.0 for r in pick])
        if any(r.get("baseline_feature_accuracy") is not None for r in pick):
            series["blind guess"] = ([r["batch_size"] for r in pick],
                                     [r.get("baseline_feature_accuracy") or 0.0 for r in pick], [0.0] * len(pick))
    path = tmp / "feature_accuracy_vs_batch.png"
    save_series_plot(series, path, title="Feature accuracy vs client batch size (mean ± std)",
                     xlabel="client batch size", ylabel="share of variables recovered", emphasise=("attacker's pick",),
                     size=(560, 400))
    return path


def _pictures(page: HtmlReport, tmp: Path, result: dict[str, Any], pictures: dict[int, dict[str, torch.Tensor]],
              confidence: dict[int, dict[str, torch.Tensor]], state: str) -> None:
    from ..metrics.tabular import hit_matrix
    from ..report.heatmaps import save_record_heatmaps
    from ..report.record_table import save_record_table

    schema = RecordSchema.from_json(result["schema"]) if result.get("schema") else None
    records = result["attacks"]["records"]
    limit = (result.get("budget") or {}).get("iterative_max_batch")
    for b in shown_batches(sorted(pictures), limit):
        seeds = [r["seed"] for r in records if r["batch_size"] == b]
        if not seeds:  # no attack of the battery ran at this batch size
            continue
        seed = min(seeds)
        pick = next((r for r in records if r["batch_size"] == b and r["seed"] == seed and r.get("chosen")), None)
        truth = pictures[b].get("truth")
        if pick is None or pick["attack"] not in pictures[b] or truth is None:
            continue
        recon = pictures[b][pick["attack"]]
        what = (f"Batch size {b}, seed {seed}, {state}: the attacker's pick ({pick['attack']}), records matched to the "
                f"private ones; feature accuracy {_pct(pick.get('feature_accuracy'))} (blind guess "
                f"{_pct(pick.get('baseline_feature_accuracy'))}).")
        if schema is not None and recon.dim() == 2:
            hits = hit_matrix(recon, truth, schema, tolerance=0.1)
            conf = confidence.get(b, {}).get(pick["attack"])
            path = save_record_table(recon, tmp / f"records_batch{b}.png", schema=schema, hits=hits,
                                     confidence=None if conf is None else conf.reshape(len(recon), -1),
                                     title=f"batch {b}: {pick['attack']}, the attacker's pick")
            page.image(path, caption=what + " Each cell is the recovered value in the variable's own units; green: "
                                            "recovered, red: not; pale with '?': a value the attack itself is unsure "
                                            "of (the first records and variables only).")
        else:
            path = save_record_heatmaps(truth, recon, tmp / f"records_batch{b}.png",
                                        title=f"batch {b}: {pick['attack']}, the attacker's pick")
            page.image(path, caption=what + " Heatmaps: private records, reconstruction and |error|.")


def _defense_section(page: HtmlReport, tmp: Path, result: dict[str, Any], recommended: str | None) -> None:
    from ..defenses.report import save_frontier_plot

    d = result["defenses"]
    rows, cfg = d["rows"], d["config"]
    fed = cfg["federated"]
    page.paragraph(
        f"Each defense: {fed['rounds']} FedAvg rounds with {fed['clients']} clients for the client accuracy, then "
        f"{cfg['victims']} defended update(s) of {cfg['batch_size']} record(s) of the trained model, attacked by "
        f"{' and '.join(d['attacks'])}, each adapted to the defense; a row reports the stronger attack (higher feature "
        "accuracy against the private records: the defender's worst case). The trained model scores differently "
        "from the first-round model of the sections above: compare the rows with each other.")
    path = tmp / "frontier.png"
    save_frontier_plot(rows, path, title="Privacy-utility frontier (records)")
    page.image(path, caption="Client accuracy against the attack's feature accuracy (left: more private); right panel "
                             "for DP rows: the identification success beside its provable bound.")
    page.table(["defense", "client accuracy", "accuracy change", "feature accuracy", "blind guess", "advantage",
                "confident quarter", "attack", "feature acc., non-adaptive", "attacker's pick", "epsilon",
                "identified / DP bound", "attacker knowledge"],
               [[r["defense"], _pm(r.get("client_accuracy"), None, 3),
                 "-" if r.get("accuracy_cost") is None or r["defense"] == "none" else f"{-r['accuracy_cost'] * 100:+.1f} points",
                 _pm(r.get("feature_accuracy"), r.get("feature_accuracy_std")),
                 _pm(r.get("baseline_feature_accuracy"), None),
                 _pct(advantage(r.get("feature_accuracy"), r.get("baseline_feature_accuracy"))),
                 _pm(r.get("confidence_q4_accuracy"), None), r.get("attack", ""),
                 _pm(r.get("non_adaptive_feature_accuracy"), None) if r["defense"] != "none" else "-",
                 _pm(r.get("pick_feature_accuracy"), None),
                 "-" if r.get("epsilon") is None else f"{r['epsilon']:.2f}",
                 f"{_pm(r.get('rero_success'), None)} / {_pm(r.get('rero_bound'), None, 3)}",
                 r.get("attacker_knowledge", "")] for r in rows],
               highlight=[r["defense"] == recommended for r in rows])
    page.paragraph("Feature accuracy: the defender's worst case; the recommendation is made from these adaptive "
                   "figures. 'Identified': share of private records whose reconstruction is closer to them than to "
                   "each of 9 other records; 'DP bound': the most any informed attacker reaches in that game under "
                   "the defense's differential-privacy guarantee.", css="muted")
    for spec, why in (d.get("skipped") or {}).items():
        page.paragraph(f"Not tested: {spec}. {why}.", css="muted")


def write_record_report(tmp: Path, *, result: dict[str, Any], pictures: dict[int, dict[str, torch.Tensor]],
                        confidence: dict[int, dict[str, torch.Tensor]] | None = None,
                        malicious_picture: dict[str, torch.Tensor] | None = None, **_ignored: Any) -> None:
    """Write the PNGs, ``report.html`` and ``report_inputs.safetensors`` of a record audit into ``tmp``."""
    save_inputs(tmp, PageInputs(pictures=pictures, defense_truth=None, defense_reconstructions=[],
                                malicious=malicious_picture))
    s, v = result["settings"], page_verdict(result)
    state = model_state(s)
    page = HtmlReport(f"gradleak audit: {s['dataset']} / {s['model']}", terms=TERMS)
    page.heading(f"Gradient leakage audit (health records): {s['dataset']} / {s['model']}", level=1)
    page.paragraph(f"gradleak {result['version']} · budget {s['budget']} · protocol {s['protocol']['name']} · "
                   f"batch sizes {', '.join(map(str, s['batch_sizes']))} · seeds {', '.join(map(str, s['seeds']))} · "
                   f"{result['timings']['total']:.0f} s", css="muted")
    page.verdict(v["level"], v["headline"], v["findings"], title=v["title"], actions=v["actions"])
    page.contents([("setup", "Setup"), ("threat", "Threat model"), ("pictures", "Reconstructions"),
                   ("batch", "Batch size"), ("attacks", "Attacks"), ("labels", "Labels"), ("rank", "Model structure"),
                   ("defenses", "Defenses"), ("malicious", "Malicious server"), ("glossary", "Glossary"),
                   ("repro", "Reproducibility")])

    page.heading("What was audited", anchor="setup")
    p, d, m = s["protocol"], result["dataset"], result["model"]
    page.facts([
        ("data", f"{d['name']}: {d['samples']} records of shape {'x'.join(map(str, d['shape']))}, classes "
                 f"{', '.join(d['classes'])} ({d['source']})"),
        ("model", f"{m['name']} {m['options'] or ''}".strip()),
        ("protocol", p["name"] + ("" if p["name"] == "fedsgd" else
                                  f" (local epochs {p['local_epochs']}, lr {p['lr']}, local batch "
                                  f"{p['local_batch_size'] or 'whole batch'})")),
        ("global model", state),
        ("clients share labels", "yes" if s["share_labels"] else "no"),
        ("client batch sizes", ", ".join(map(str, s["batch_sizes"]))),
        ("seeds", ", ".join(map(str, s["seeds"]))),
        ("client data", result["client_split"] or "drawn from the whole data set"),
    ])
    page.heading("Threat model", anchor="threat")
    page.bullets(THREAT_MODEL)

    page.heading("Reconstructions", anchor="pictures")
    _pictures(page, tmp, result, pictures, confidence or {}, state)

    page.heading("Attack success vs batch size", anchor="batch")
    page.image(_accuracy_plot(tmp, result), caption="Feature accuracy of each attack and of the attacker's pick (black, "
                                                    "dashed), and of a blind guess that ignores the update.")
    bound = {r["batch_size"]: r for r in result["attacks"].get("worst_case", [])}
    page.table(["batch size", "attacker's pick", "feature accuracy", "blind guess", "advantage",
                "most confident quarter", "blind guess there", "label accuracy", "seeds",
                "defender's worst case: attack", "feature accuracy"],
               [[r["batch_size"], ", ".join(r["attacks"]), _pm(r.get("feature_accuracy"), r.get("feature_accuracy_std")),
                 _pm(r.get("baseline_feature_accuracy"), None),
                 _pct(advantage(r.get("feature_accuracy"), r.get("baseline_feature_accuracy"))),
                 _pm(r.get("confidence_q4_accuracy"), r.get("confidence_q4_accuracy_std")),
                 _pm(r.get("confidence_q4_baseline"), None), _pct(r.get("label_count_accuracy")), r["seeds"],
                 *((bound[r["batch_size"]]["attack"], _pm(bound[r["batch_size"]]["feature_accuracy"], None))
                   if r["batch_size"] in bound else ("-", "-"))] for r in result["attacks"]["attacker_choice"]])
    page.paragraph("Advantage: the share of what the blind guess gets wrong that the attack gets right (0: nothing "
                   "leaked beyond the guess, 100%: exact). Most confident quarter: the values the attack itself is "
                   "surest of (ensemble agreement), their accuracy, and the blind guess's accuracy on the same values. "
                   "The attacker's pick is chosen without the private data (lowest update mismatch); the defender's "
                   "worst case is the best attack scored with the private data.", css="muted")

    page.heading("Attacks", anchor="attacks")
    summary = result["attacks"]["summary"]
    page.table(["batch", "attack", "kind", "feature acc.", "continuous", "categorical", "binary", "similarity",
                "confident quarter", "label acc.", "exact / certified", "update mismatch", "seconds", "picked",
                "failed"],
               [[r["batch_size"], r["attack"], r["kind"], _pm(r.get("feature_accuracy"), r.get("feature_accuracy_std")),
                 _pct(r.get("continuous_accuracy")), _pct(r.get("categorical_accuracy")), _pct(r.get("mask_accuracy")),
                 _pm(r.get("similarity"), None, 3), _pct(r.get("confidence_q4_accuracy")),
                 _pct(r.get("label_count_accuracy")),
                 "-" if r.get("certified_fraction") is None else
                 f"{_pct(r.get('exact_fraction'))} / {_pct(r['certified_fraction'])}",
                 "-" if r.get("mismatch") is None else f"{r['mismatch']:.2e}", _pm(r.get("seconds"), None, 1),
                 f"{r['chosen']}/{r['runs']}", r["failed"]] for r in summary])
    errors = [f"{r['attack']} (batch {r['batch_size']}): {'; '.join(r['errors'])}" for r in summary if r.get("errors")]
    if errors:
        page.paragraph("Failed runs:")
        page.bullets(errors)
    limit = result.get("budget", {}).get("iterative_max_batch")
    if limit is not None and any(b > limit for b in s["batch_sizes"]):
        page.paragraph(f"Single-reconstruction optimisation attacks run up to batch size {limit} (the budget's limit); "
                       "closed-form attacks and the record ensemble (tableak) run at every batch size.", css="muted")
    skipped = [f"{e['attack']}: {e['skipped']}" for e in result["battery"] if e["skipped"]]
    if skipped:
        page.paragraph("Attacks not run, and why:")
        page.bullets(skipped)

    page.heading("Labels", anchor="labels")
    page.table(["batch size", "labels recovered", "method", "seeds"],
               [[r["batch_size"], _pm(r["accuracy"] * 100, (r["accuracy_std"] or 0) * 100, 0) + "%",
                 ", ".join(r["method"]), r["seeds"]] for r in result["labels"]])

    page.heading("Model structure", anchor="rank")
    split = result["rank"].get("disaggregation")
    page.paragraph("Batches (SPEAR-style exact disaggregation): " + (
        f"{split['verdict']}." if split else "the model has no linear layer followed by a ReLU, so no batch can be "
        "split exactly through one."))

    page.heading("Defenses", anchor="defenses")
    if result.get("defenses"):
        _defense_section(page, tmp, result, v.get("recommended_defense"))
    else:
        page.paragraph("No defense sweep was requested (--defenses none given).", css="muted")

    page.heading("Malicious server (crafted model)", anchor="malicious")
    if result.get("malicious"):
        from .malicious_page import malicious_section

        malicious_section(page, tmp, result["malicious"], None, exact_rule=EXACT_RULE)
    else:
        page.paragraph("Not measured (--threat honest).", css="muted")

    page.heading("Glossary", anchor="glossary")
    page.definitions([(e.term, e.meaning) for e in ENTRIES], anchors=[e.anchor for e in ENTRIES])

    page.heading("Reproducibility", anchor="repro")
    env = result["environment"]
    page.facts([("command", " ".join(["gradleak", *result["argv"]]) if result["argv"] else "(Python API)"),
                ("seeds", ", ".join(map(str, s["seeds"]))),
                ("versions", f"gradleak {env['gradleak']}, torch {env['torch']}, numpy {env['numpy']}, "
                             f"Python {env['python']}"),
                ("time per stage", ", ".join(f"{k} {v:.0f} s" for k, v in result["timings"].items()))])
    page.write(tmp / "report.html")

