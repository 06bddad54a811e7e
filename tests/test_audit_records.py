"""gradleak audit on health records: the blind guess, the advantage over it, the verdict rules, one real run."""

from __future__ import annotations

import json

import pytest
import torch

from gradleak.audit.records import RecordThresholds, advantage, level_of, record_verdict
from gradleak.cli import main
from gradleak.data.schema import build_schema, typical_records
from gradleak.errors import DataError
from gradleak.metrics.tabular import evaluate_records


def _schema():
    # columns: age (continuous), sex (binary), stage (categorical, 3 columns)
    return build_schema([("age", "continuous", ()), ("sex", "binary", ()), ("stage", "categorical", ("I", "II", "III"))],
                        time_steps=None)


def test_blind_guess_is_the_mean_the_most_frequent_category_and_rounded_flags():
    guess = typical_records(_schema(), [0.3, 0.7, 0.2, 0.5, 0.3], shape=(2, 5))
    assert torch.equal(guess, torch.tensor([[0.3, 1.0, 0.0, 1.0, 0.0]] * 2))
    with pytest.raises(DataError, match="5 columns"):
        typical_records(_schema(), [0.0, 1.0], shape=(1, 5))


def test_record_metrics_score_the_blind_guess_overall_and_on_the_confident_quarter():
    schema = _schema()
    truth = torch.tensor([[0.0, 1.0, 0, 1, 0], [2.0, 0.0, 1, 0, 0]])
    guess = typical_records(schema, [0.0, 0.6, 0.2, 0.5, 0.3], shape=(2, 5))  # row 0 right everywhere, row 1 nowhere
    recon = truth.clone()
    recon[1, 0] = 5.0  # one continuous value wrong
    confidence = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # sure of row 0 (where the guess is right)
    m = evaluate_records(reconstruction=recon, truth=truth, schema=schema, confidence=confidence, baseline=guess)
    assert m["feature_accuracy"] == pytest.approx(5 / 6)
    assert m["baseline_feature_accuracy"] == pytest.approx(3 / 6)
    # the most confident values are row 0's: right for the attack and for the blind guess alike
    assert m["confidence_q4_accuracy"] == 1.0 and m["confidence_q4_baseline"] == 1.0
    assert m["confidence_q1_baseline"] == 0.0


def test_advantage_is_the_share_of_what_the_guess_misses():
    assert advantage(1.0, 0.3) == pytest.approx(1.0)
    assert advantage(0.3, 0.3) == pytest.approx(0.0)
    assert advantage(0.65, 0.3) == pytest.approx(0.5)
    assert advantage(None, 0.3) is None and advantage(0.9, 1.0) is None
    th = RecordThresholds()
    assert level_of(0.7, None, None, th) == "high"
    assert level_of(0.4, None, None, th) == "medium"
    assert level_of(0.1, 0.8, None, th) == "medium"  # the attacker's confident quarter leaks
    assert level_of(0.1, None, 0.95, th) == "medium"  # labels leak
    assert level_of(0.1, 0.2, 0.5, th) == "low"


def _row(b, acc, base, q4=None, q4_base=None, attack="tableak"):
    return {"batch_size": b, "attacks": [attack], "attack": attack, "seeds": 2, "feature_accuracy": acc,
            "baseline_feature_accuracy": base, "confidence_q4_accuracy": q4, "confidence_q4_baseline": q4_base}


def test_record_verdict_reads_the_pick_against_the_blind_guess_and_says_where_batches_help():
    exact = record_verdict(curve=[_row(1, 1.0, 0.3, attack="spear"), _row(32, 0.45, 0.3, 0.95, 0.6)],
                           worst=[_row(1, 1.0, 0.3, attack="spear"), _row(32, 0.45, 0.3)],
                           labels=[], rank={}, defenses=[
                               {"defense": "none", "client_accuracy": 0.70, "accuracy_cost": 0.0,
                                "feature_accuracy": 0.9, "baseline_feature_accuracy": 0.3},
                               {"defense": "noise:0.01", "client_accuracy": 0.69, "accuracy_cost": 0.01,
                                "feature_accuracy": 0.5, "baseline_feature_accuracy": 0.3},  # advantage 0.29: safe
                               {"defense": "dpsgd:1.0", "client_accuracy": 0.50, "accuracy_cost": 0.20,
                                "feature_accuracy": 0.3, "baseline_feature_accuracy": 0.3}])  # too costly
    assert exact["level"] == "high" and exact["recommended_defense"] == "noise:0.01"
    text = " ".join(exact["findings"] + exact["actions"])
    assert "100%" in text and "From batch size 32 on" in text and "Apply noise:0.01" in text
    assert "surest of leak" in text and "up to batch size 32" in text  # 0.95 vs 0.6 on the same values
    # nothing beyond the blind guess, even on the confident quarter: low
    low = record_verdict(curve=[_row(1, 0.35, 0.3, 0.7, 0.65)], worst=[_row(1, 0.35, 0.3)], labels=[], rank={})
    assert low["level"] == "low"


@pytest.fixture(scope="module")
def record_audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("records") / "run"
    assert main(["audit", "--dataset", "gbsg2", "--budget", "quick", "--batch-sizes", "1", "16", "--attacks", "spear",
                 "tableak", "--defenses", "none", "dpsgd:1.0", "--quiet", "--workers", "1", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_audit_of_a_clinical_table_measures_records_and_writes_its_report(record_audit):
    out, result = record_audit
    assert result["data_kind"] == "tabular" and result["settings"]["model"] == "mlp"  # the records' default victim
    by = {(r["attack"], r["batch_size"]): r for r in result["attacks"]["summary"]}
    assert by[("spear", 1)]["exact_fraction"] == 1.0 and by[("spear", 1)]["feature_accuracy"] == 1.0
    assert ("tableak", 16) in by  # the record ensemble runs above the budget's iterative limit (4)
    blind = by[("tableak", 16)]["baseline_feature_accuracy"]
    assert 0 < blind < 0.6
    assert result["verdict"]["level"] == "high" and "records" in result["verdict"]["headline"]
    assert result["malicious"]["rows"] and result["malicious"]["rows"][0]["exact_fraction"] == 1.0  # imprint on rows
    # the defense sweep on records: the undefended trained model leaks (spear at batch 1), DP-SGD is measured
    # against its provable bound
    rows = {r["defense"]: r for r in result["defenses"]["rows"]}
    assert rows["none"]["feature_accuracy"] == 1.0 and "spear" in result["defenses"]["attacks"]
    assert rows["dpsgd:1"]["feature_accuracy"] < rows["none"]["feature_accuracy"]
    assert rows["dpsgd:1"]["rero_bound"] is not None and not rows["dpsgd:1"].get("rero_violation")
    html = (out / "report.html").read_text()
    assert "health records" in html and "blind guess" in html and "feature acc., non-adaptive" in html
    for picture in ("records_batch1.png", "feature_accuracy_vs_batch.png", "frontier.png"):
        assert (out / picture).exists()


def test_defend_on_a_clinical_table_scores_feature_accuracy(tmp_path):
    out = tmp_path / "d"
    assert main(["defend", "--dataset", "gbsg2", "--model", "mlp", "--defenses", "none", "noise:0.01", "--attack",
                 "tableak", "--quick", "--victims", "1", "--rounds", "2", "--batch-size", "2", "--option",
                 "iterations=20", "--option", "members=2", "--quiet", "--out", str(out)]) == 0
    rows = json.loads((out / "defenses.json").read_text())
    assert [r["defense"] for r in rows] == ["none", "noise:0.01"]
    assert all(0 <= r["feature_accuracy"] <= 1 and r["baseline_feature_accuracy"] is not None for r in rows)
    assert rows[0]["psnr"] is None  # no image score on records
    table = (out / "defenses.md").read_text()
    assert "feature acc. (records)" in table and "PSNR" not in table.split("\n")[2]
    assert (out / "frontier.png").exists() and (out / "reconstructions.png").exists()
