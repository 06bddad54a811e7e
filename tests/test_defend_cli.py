"""``gradleak defend`` as a user runs it: outputs, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest

from gradleak.cli import main

TINY = ["defend", "--dataset", "digits", "--model", "lenet", "--quick", "--rounds", "2", "--victims", "2", "--quiet",
        "--option", "iterations=5"]


@pytest.mark.parametrize("spec, needle", [
    ("bogus", "bogus"), ("noise:-0.01", "noise scale must be >= 0"), ("prune:1.0", "[0, 1)"),
    ("prune:1.5", "[0, 1)"), ("noise:x", "not a number"),
])
def test_invalid_defense_spec_is_one_line_exit_2(tmp_path, capsys, spec, needle):
    out = tmp_path / "d"
    code = main([*TINY, "--defenses", "none", spec, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert needle in err and not out.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--attack", "nope"], "nope"), (["--option", "bogus=1"], "bogus"), (["--victims", "0"], "--victims"),
])
def test_bad_attack_or_budget_fails_before_training(tmp_path, capsys, monkeypatch, extra, needle):
    import gradleak.defenses.evaluation as evaluation

    monkeypatch.setattr(evaluation, "federated_training", lambda *a, **k: pytest.fail("trained before checking"))
    out = tmp_path / "d"
    code = main([*TINY, "--defenses", "none", *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and needle in err and not out.exists()


def test_defend_writes_table_frontier_and_rows(tmp_path, capsys):
    out = tmp_path / "d"
    code = main([*TINY, "--defenses", "none", "noise:0.01", "prune:0.5", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "defenses.json").read_text())
    assert [r["defense"] for r in rows] == ["none", "noise:0.01", "prune:0.5"]
    for r in rows:
        assert 0 <= r["client_accuracy"] <= 1 and len(r["accuracy_history"]) == 2
        assert r["psnr"] is not None and r["psnr_std"] is not None and 0 <= r["attacker_accuracy"] <= 1
        assert r["attacker_knowledge"] and r["victims"] == 2
    assert rows[1]["attacks"]["ig"]["options"] == {"iterations": 5, "distance": "l2", "restarts": 2}  # adaptive vs noise
    assert rows[2]["attacks"]["ig"]["options"] == {"iterations": 5, "entries": "nonzero"}  # adaptive vs pruning
    assert rows[2]["attacks"]["ig (non-adaptive)"]["options"] == {"iterations": 5}  # the adaptive attacker may also ignore it
    assert "non_adaptive_psnr" not in rows[0]  # undefended: nothing to adapt to
    for r in rows[1:]:  # the non-adaptive attacker on the same updates, beside the adaptive one, never above it
        assert r["non_adaptive_attack"] == "ig" and r["non_adaptive_psnr"] <= r["psnr"] + 1e-9
    for r in rows:  # the attacker's own pick (lowest update mismatch) never above the defender's worst case
        assert sum(r["pick_attacks"].values()) == 2 and r["pick_psnr"] <= r["psnr"] + 1e-9
        assert 0 <= r["pick_mismatch"] <= 2
    table = (out / "defenses.md").read_text()
    assert "| noise:0.01 |" in table and "attacker knowledge" in table
    assert "non-adaptive PSNR" in table and "attacker's pick PSNR" in table
    for picture in ("frontier.png", "reconstructions.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["federated"]["rounds"] == 2 and config["threads"] == 1


def test_measured_success_above_dp_bound_fails_loudly(tmp_path, capsys, monkeypatch):
    import gradleak.defenses.evaluation as evaluation
    from gradleak.defenses.rero import ReRoCheck

    broken = ReRoCheck(successes=20, trials=20, kappa=0.1, mu=0.5, method="a wrong accountant")
    monkeypatch.setattr(evaluation.Evaluator, "rero", lambda *a, **k: broken)
    out = tmp_path / "d"
    code = main([*TINY, "--rounds", "1", "--victims", "1", "--defenses", "dpsgd:4", "--out", str(out)])
    assert code == 1 and "BOUND VIOLATED: dpsgd:4" in capsys.readouterr().err
    row = json.loads((out / "defenses.json").read_text())[0]  # the evidence is kept
    assert row["rero_violation"] and row["rero_bound"] < row["rero_success"] and "DP bound" in (out / "defenses.md").read_text()
