"""gradleak audit: the whole pipeline on tiny data, its verdict rules, bad input, the report in a browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradleak.audit.battery import PLANS, Setup, battery
from gradleak.audit.budget import get_budget
from gradleak.audit.leakage import _mark_attacker_choice, mean_std
from gradleak.audit.protection import sweep_attacks, with_cost
from gradleak.audit.verdict import Thresholds, level_of, recommend_defense, verdict
from gradleak.cli import main

@pytest.fixture(scope="module")
def tiny_audit(tiny_audit_dir):
    """The session's one real audit (conftest.TINY_AUDIT) and its results.json."""
    return tiny_audit_dir, json.loads((tiny_audit_dir / "results.json").read_text())


def test_audit_runs_every_stage_and_leads_with_a_verdict(tiny_audit):
    out, result = tiny_audit
    v = result["verdict"]
    assert v["level"] == "high"  # R-GAP inverts an undefended batch-1 LeNet gradient exactly
    assert result["rank"]["status"] in ("ok", "not applicable", "unavailable")
    assert [r["batch_size"] for r in result["labels"]] == [1, 2] and result["labels"][0]["accuracy"] == 1.0
    summary = {(r["attack"], r["batch_size"]): r for r in result["attacks"]["summary"]}
    assert set(summary) == {("rgap", 1), ("rgap", 2), ("ig", 1), ("ig", 2)}
    assert summary[("rgap", 1)]["ssim"] > 0.99
    picks = result["attacks"]["attacker_choice"]
    assert [p["batch_size"] for p in picks] == [1, 2] and all(p["seeds"] == 1 for p in picks)
    # exactly one pick per (batch, seed), and it is the lowest update mismatch of its round
    for b in (1, 2):
        rows = [r for r in result["attacks"]["records"] if r["batch_size"] == b]
        assert sum(r["chosen"] for r in rows) == 1
        assert next(r for r in rows if r["chosen"])["mismatch"] == min(r["mismatch"] for r in rows)
    skipped = {e["attack"]: e["skipped"] for e in result["battery"]}
    assert skipped["rgap"] is None and "not requested" in skipped["idlg"] and skipped["giz"]
    assert [r["defense"] for r in result["defenses"]["rows"]] == ["none", "noise:0.01"]
    assert result["defenses"]["attacks"][0] in ("rgap", "ig")
    noisy = result["defenses"]["rows"][1]  # adaptive (L2 matching) and non-adaptive on the same update, side by side
    assert noisy["adaptive"] and noisy["non_adaptive_ssim"] is not None and noisy["pick_ssim"] is not None
    for name in ("report.html", "results.json", "reconstructions_batch1.png", "reconstructions_batch2.png",
                 "psnr_vs_batch.png", "ssim_vs_batch.png", "frontier.png", "defense_reconstructions.png"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.parent.glob(".run.*"))  # the atomic temporary directory is gone


def test_report_is_self_contained_and_verdict_first(tiny_audit):
    from gradleak.report.browser import external_references

    out, result = tiny_audit
    html = (out / "report.html").read_text()
    assert external_references(html) == []
    assert html.count("data:image/png;base64,") >= 6
    assert "<script" not in html
    body = html[html.index("<body>"):]
    assert body.index('id="verdict"') < body.index("<h2")  # the verdict comes before every section
    assert result["verdict"]["headline"] in html.replace("&#x27;", "'")
    for section in ("Threat model", "Attack success vs batch size", "Defenses", "Reproducibility"):
        assert section in html


@pytest.mark.parametrize("extra, fragment", [
    (["--dataset", "nope"], "nope"),
    (["--attacks", "zap"], "zap"),
    (["--defenses", "noise:abc"], "abc"),
    (["--batch-sizes", "0"], "batch sizes"),
    (["--seeds", "0"], "--seeds"),
    (["--model", "alexnet"], "alexnet"),
    (["--prior", "/nonexistent/prior"], "prior"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, extra, fragment):
    out = tmp_path / "out"
    code = main(["audit", "--quiet", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unknown_budget_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--budget", "huge", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "huge" in capsys.readouterr().err


def test_battery_lists_every_registered_attack_with_a_reason():
    from gradleak.attacks import ATTACKS
    from gradleak.fl.protocol import Protocol
    from gradleak.models import ModelSpec, complete_spec

    spec = complete_spec(ModelSpec(name="convnet", input_shape=(3, 16, 16), num_classes=2))
    setup = Setup(spec=spec, protocol=Protocol(), data_kind="image", prior=None, budget=get_budget("standard"))
    entries = {e.name: e for e in battery(setup)}
    assert set(entries) == set(ATTACKS.names())
    assert "ReLU" in entries["rgap"].skipped or "BatchNorm" in entries["rgap"].skipped  # not invertible
    assert entries["ig"].skipped is None and entries["ig"].options == {"iterations": 400}
    assert "prior" in entries["giz"].skipped and "thorough" in entries["giml"].skipped
    assert all(e.skipped for n, e in entries.items() if n not in PLANS)  # unplanned attacks are named, not run


def test_fedavg_attack_joins_the_battery_only_for_several_local_steps():
    from gradleak.fl.protocol import Protocol
    from gradleak.models import ModelSpec, complete_spec

    spec = complete_spec(ModelSpec(name="lenet", input_shape=(1, 8, 8), num_classes=10))

    def entry(protocol: Protocol):
        setup = Setup(spec=spec, protocol=protocol, data_kind="image", prior=None, budget=get_budget("quick"))
        return {e.name: e for e in battery(setup)}["fedavg"]

    assert "one gradient" in entry(Protocol()).skipped
    assert "one gradient" in entry(Protocol(name="fedavg", lr=0.1)).skipped
    chosen = entry(Protocol(name="fedavg", lr=0.1, local_epochs=2, shuffle=True))
    assert chosen.skipped is None and chosen.options == {"iterations": 200}  # IG's budget


def test_attacker_picks_by_mismatch_not_by_truth():
    records = [{"attack": "a", "status": "ok", "mismatch": 1e-3, "psnr": 40.0},
               {"attack": "b", "status": "ok", "mismatch": 1e-6, "psnr": 12.0},
               {"attack": "c", "status": "error"}]
    _mark_attacker_choice(records)
    assert [r["chosen"] for r in records] == [False, True, False]  # b: best fit, although worse PSNR


def test_verdict_levels_and_recommendation():
    th = Thresholds()
    assert level_of(0.95, None, th) == "high"
    assert level_of(0.4, 0.5, th) == "medium" and level_of(0.1, 1.0, th) == "medium"  # labels alone leak
    assert level_of(0.1, 0.5, th) == "low" and level_of(None, None, th) == "unknown"
    rows = with_cost([
        {"defense": "none", "client_accuracy": 0.90, "ssim": 0.95, "psnr": 40.0},
        {"defense": "noise:0.1", "client_accuracy": 0.60, "ssim": 0.02, "psnr": 8.0},  # protects, too costly
        {"defense": "prune:0.9", "client_accuracy": 0.88, "ssim": 0.10, "psnr": 11.0},  # protects, cheap
        {"defense": "clip:1", "client_accuracy": 0.90, "ssim": 0.90, "psnr": 35.0},  # free, useless
    ])
    assert recommend_defense(rows, th)["defense"] == "prune:0.9"
    curve = [{"batch_size": 1, "attacks": ["rgap"], "ssim": 0.99, "ssim_std": 0.0, "psnr": 80.0, "psnr_std": 0.0},
             {"batch_size": 8, "attacks": ["ig"], "ssim": 0.05, "ssim_std": 0.01, "psnr": 9.0, "psnr_std": 1.0}]
    worst = [{"batch_size": 1, "attack": "rgap", "ssim": 0.99, "ssim_std": 0.0},
             {"batch_size": 4, "attack": "cinet", "ssim": 0.35, "ssim_std": 0.1},  # the pick missed it
             {"batch_size": 8, "attack": "ig", "ssim": 0.05, "ssim_std": 0.01}]
    v = verdict(curve=curve, worst=worst, labels=[{"batch_size": 1, "accuracy": 1.0}], baseline=12.0,
                rank={"status": "x"}, defenses=rows, dataset="histology")
    assert v["level"] == "high" and v["recommended_defense"] == "prune:0.9"
    assert any("prune:0.9" in a for a in v["actions"]) and any("at least 8 samples" in a for a in v["actions"])
    assert "12.0 dB" in v["findings"][0] and any("0.35 at 4 (cinet)" in f for f in v["findings"])
    v = verdict(curve=curve, worst=worst[:2], labels=[], baseline=None, rank={}, defenses=[], dataset="d")
    assert not any("samples" in a for a in v["actions"])  # batch 4 still leaks: no batch advice


def test_defense_sweep_attacks_follow_the_attacker_within_budget():
    rows = [{"attack": "rgap", "kind": "closed-form", "chosen": 2, "mismatch": 0.0},
            {"attack": "idlg", "kind": "optimisation", "chosen": 0, "mismatch": 1e-9}]
    assert sweep_attacks(rows, max_weight=2.0) == ("rgap", "ig")
    rows[0]["chosen"], rows[1]["chosen"] = 0, 2
    assert sweep_attacks(rows, max_weight=2.0) == ("rgap", "ig")  # L-BFGS is over the standard budget's cap
    assert sweep_attacks(rows, max_weight=float("inf")) == ("idlg", "ig")
    assert sweep_attacks(rows[1:], max_weight=2.0) == ("ig",)


def test_mean_std_is_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([None, float("nan")]) == (None, None) and mean_std([5.0]) == (5.0, 0.0)


def test_report_opens_in_headless_browser_without_errors(tiny_audit, tmp_path):
    from gradleak.report.browser import check_report, find_browser

    if find_browser() is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    out, _ = tiny_audit
    check = check_report(out / "report.html", tmp_path / "shot.png", height=1600)
    assert check.ok, (check.console_errors, check.external)
    from PIL import Image

    with Image.open(check.screenshot) as image:
        assert image.size == (1200, 1600)
        pixels = list(image.convert("RGB").getdata())
    verdict_box = sum(1 for p in pixels if abs(p[0] - 0xfd) < 3 and abs(p[1] - 0xe2) < 3 and abs(p[2] - 0xe1) < 3)
    assert verdict_box > 50_000  # the high-risk verdict box was drawn, in its colour, near the top
    assert len(set(pixels[::97])) > 50  # and more than a blank page: text, images


def test_plugin_registers_your_own_model_and_image_folder(tmp_path):
    """The tutorial's path: an image folder and a CNN registered by a plugin file, audited by the CLI."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(12):
        folder = tmp_path / "images" / ("benign" if k % 2 else "malignant")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "audit"
    plugin = str(Path(__file__).resolve().parents[1] / "examples" / "own_model" / "hospital.py")
    args = ["audit", "--plugin", plugin, "--dataset", "ward-images", "--data-root", str(tmp_path / "images"),
            "--model", "ward-cnn", "--image-size", "16", "--budget", "quick", "--batch-sizes", "1",
            "--attacks", "rgap", "--defenses", "none", "--quiet", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["dataset"]["classes"] == ["benign", "malignant"] and result["model"]["name"] == "ward-cnn"
    assert result["defenses"] is None and result["verdict"]["level"] == "high"
    assert main(args) == 0  # loading the same plugin twice in one process is harmless


def test_broken_plugin_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('cannot reach the PACS server')\n")
    for target, fragment in ((str(bad), "cannot reach the PACS server"), (str(tmp_path / "none.py"), "no such file")):
        assert main(["audit", "--plugin", target, "--quiet", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_spear_joins_the_battery_only_where_a_first_linear_relu_exists():
    from gradleak.fl.protocol import Protocol
    from gradleak.models import ModelSpec, complete_spec

    def entry(model: str, protocol: Protocol = Protocol()):
        spec = complete_spec(ModelSpec(name=model, input_shape=(1, 8, 8), num_classes=10))
        setup = Setup(spec=spec, protocol=protocol, data_kind="image", prior=None, budget=get_budget("standard"))
        return {e.name: e for e in battery(setup)}["spear"]

    assert entry("mlp").skipped is None and entry("mlp").kind == "closed-form"
    assert "ReLU" in entry("lenet").skipped
    assert "several local steps" in entry("mlp", Protocol(name="fedavg", local_epochs=2)).skipped
    assert max(get_budget("standard").batch_sizes) == 32 and max(get_budget("thorough").batch_sizes) == 64


def test_record_attack_runs_in_sequence_mode_on_recurrent_victims():
    from gradleak.fl.protocol import Protocol
    from gradleak.models import ModelSpec, complete_spec

    def options(model: str) -> dict:
        spec = complete_spec(ModelSpec(name=model, input_shape=(48, 76), num_classes=2))
        setup = Setup(spec=spec, protocol=Protocol(), data_kind="timeseries", prior=None, budget=get_budget("standard"))
        return {e.name: e for e in battery(setup)}["tabular"].options

    assert options("gru") == {"mode": "sequence", "iterations": 80} and options("lstm")["mode"] == "sequence"
    assert "mode" not in options("mlp")  # the study's prior mode


def test_audit_says_where_exact_recovery_stops(tmp_path):
    out = tmp_path / "a"
    assert main(["audit", "--dataset", "digits", "--model", "mlp", "--budget", "quick", "--batch-sizes", "1", "8",
                 "--attacks", "spear", "ig", "--defenses", "none", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    spear = [r for r in result["attacks"]["summary"] if r["attack"] == "spear"]
    assert [r["batch_size"] for r in spear] == [1, 8] and all(r["certified_fraction"] == 1.0 for r in spear)
    assert {r["batch_size"] for r in result["attacks"]["summary"] if r["attack"] == "ig"} == {1}  # quick: iterative <= 4
    finding = next(f for f in result["verdict"]["findings"] if f.startswith("Exact recovery"))
    assert "holds at every tested batch size, up to 8" in finding and "body.0" in finding
    assert any("Batch size is no protection" in a for a in result["verdict"]["actions"])
    assert result["rank"]["disaggregation"]["layer"] == "body.0"
    html = (out / "report.html").read_text()
    assert "exact / certified" in html and "Batches (SPEAR-style exact disaggregation)" in html


def test_malicious_server_section_and_its_verdict(tiny_audit):
    """By default the audit also measures a crafted model, with and without secure aggregation of 8 clients."""
    out, result = tiny_audit
    stage = result["malicious"]
    assert [(r["batch_size"], r["clients"]) for r in stage["rows"]] == [(1, 1), (1, 8), (2, 1), (2, 8)]
    assert all(r["inspect_refuses"] for r in stage["rows"]) and stage["audited_model_inspect"] == "no finding"
    assert min(r["exact_fraction"] for r in stage["rows"]) >= 0.5  # a handful of samples in 1024 bins
    assert any("Secure aggregation alone is no protection" in a for a in result["verdict"]["actions"])
    assert any("Malicious server" in f for f in result["verdict"]["findings"])
    html = (out / "report.html").read_text()
    assert "Malicious server (crafted model)" in html and (out / "malicious_reconstructions.png").stat().st_size > 0
    setup = Setup(spec=None, protocol=None, data_kind="image", prior=None, budget=get_budget("quick"))
    assert "malicious" in PLANS.get("imprint").excluded(setup)  # never run on the honest model


def test_malicious_findings_without_the_section():
    from gradleak.audit.malicious import malicious_findings

    assert malicious_findings(None) == ([], [])
    stage = {"bins": 1024, "clients": 8, "audited_model_inspect": "no finding", "rows": [
        {"batch_size": 4, "clients": 1, "samples": 4, "exact_fraction": 1.0, "inspect_refuses": True},
        {"batch_size": 4, "clients": 8, "samples": 32, "exact_fraction": 0.9, "inspect_refuses": True}]}
    findings, actions = malicious_findings(stage)
    assert "90% of 32" in findings[0] and "gradleak inspect" in actions[0] and "refused every" in actions[0]


def test_parallel_battery_gives_the_sequential_records(tiny_audit, tmp_path):
    """The shared audit ran its battery and defense sweep in 2 worker processes; one process gives
    the same records, defense rows and verdict."""
    from gradleak.cli import main
    from conftest import TINY_AUDIT

    _, parallel = tiny_audit
    out = tmp_path / "seq"
    assert main([*TINY_AUDIT[:-2], "--workers", "1", "--out", str(out)]) == 0
    sequential = json.loads((out / "results.json").read_text())
    keys = ("attack", "batch_size", "seed", "status", "psnr", "ssim", "mismatch", "chosen")
    assert [{k: r.get(k) for k in keys} for r in sequential["attacks"]["records"]] == \
        [{k: r.get(k) for k in keys} for r in parallel["attacks"]["records"]]
    keys = ("defense", "client_accuracy", "psnr", "ssim", "non_adaptive_psnr", "pick_psnr", "reference_accuracy")
    assert [{k: r.get(k) for k in keys} for r in sequential["defenses"]["rows"]] == \
        [{k: r.get(k) for k in keys} for r in parallel["defenses"]["rows"]]
    assert sequential["verdict"]["headline"] == parallel["verdict"]["headline"]
