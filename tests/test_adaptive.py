"""The adaptive attacker is the default wherever a defended update is attacked (issue #19)."""

from __future__ import annotations

import json

from gradleak.cli import main
from gradleak.defenses.adaptive import plan_attack

FAST = ["--dataset", "digits", "--model", "lenet", "--batch-size", "1", "--seed", "0", "--attack", "ig",
        "--iterations", "3", "--quiet"]


def test_plan_adapts_per_defense_and_keeps_user_options():
    prune = plan_attack("ig", options={"iterations": 5}, defense="prune:0.9")
    assert prune.adaptive and prune.options == {"iterations": 5, "entries": "nonzero"}
    assert "adaptive to prune:0.9" in prune.knowledge and "survived" in prune.knowledge
    noise = plan_attack("ig", options={"restarts": 2}, defense="noise:0.1")
    assert noise.overrides == {"distance": "l2", "restarts": 4}
    assert plan_attack("ig", options={}, defense="clip:1").overrides == {"distance": "cosine"}
    assert plan_attack("ig", options={}, defense="dpsgd:1").overrides["distance"] == "cosine"


def test_plan_non_adaptive_and_undefended():
    off = plan_attack("ig", options={"iterations": 5}, defense="prune:0.9", adaptive=False)
    assert not off.adaptive and off.options == {"iterations": 5} and "non-adaptive" in off.knowledge
    none = plan_attack("ig", options={}, defense=None)
    assert not none.adaptive and none.defense is None and "adaptive" not in none.knowledge
    assert plan_attack("ig", options={}, defense="none").defense is None


def test_attack_cli_defense_is_adaptive_by_default(tmp_path):
    assert main(["attack", *FAST, "--defense", "prune:0.9", "--out", str(tmp_path / "a")]) == 0
    assert main(["attack", *FAST, "--defense", "prune:0.9", "--non-adaptive", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["adaptive"] and a["adaptive_options"] == {"entries": "nonzero"} and "adaptive to prune:0.9" in a["attacker_knowledge"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["options"]["entries"] == "nonzero"
    assert not b["adaptive"] and "non-adaptive" in b["attacker_knowledge"] and b["defense"] == "prune:0.9"


def test_attack_saved_defended_observation_adapts(tmp_path):
    obs = tmp_path / "obs"
    assert main(["observe", "--dataset", "digits", "--model", "lenet", "--defense", "noise:0.01", "--quiet",
                 "--out", str(obs)]) == 0
    assert main(["attack", "--observation", str(obs), "--attack", "ig", "--iterations", "2", "--quiet",
                 "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["adaptive"] and m["adaptive_options"]["distance"] == "l2" and m["defense"] == "noise:0.01"


def test_audit_recommendation_names_the_adaptive_attacker():
    from gradleak.audit.verdict import Thresholds, _defense_actions

    base = {"defense": "none", "ssim": 0.9, "psnr": 30.0, "client_accuracy": 0.8, "accuracy_cost": 0.0}
    pick = {"defense": "prune:0.99", "ssim": 0.1, "psnr": 8.0, "client_accuracy": 0.79, "accuracy_cost": 0.01,
            "attack": "ig", "adaptive": True, "attacker_knowledge": "which entries survived"}
    text = _defense_actions([base, pick], Thresholds())[0]
    assert "Apply prune:0.99" in text and "adaptive ig attacker" in text and "which entries survived" in text
