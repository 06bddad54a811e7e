"""Malformed command-line values: attack options, model options, scenario flags, names.

Every one is refused with one ``gradleak ...: error:`` line naming the value (and, for a
misspelled name, the close valid one), exit 2, before any simulation or attack work.
"""

from __future__ import annotations

import pytest

from malformed_helpers import _no_long_work, refused  # noqa: F401  (fixtures)

SIMULATED = ["--dataset", "digits", "--model", "lenet", "--batch-size", "1", "--quiet"]

ATTACK_OPTION_CASES = {
    "iterations-word": (["--option", "iterations=abc"], "iterations"),
    "iterations-fraction": (["--option", "iterations=1.5"], "iterations"),
    "iterations-bool": (["--option", "iterations=true"], "iterations"),
    "iterations-zero": (["--option", "iterations=0"], "iterations"),
    "iterations-negative-flag": (["--iterations", "-3"], "iterations"),
    "restarts-zero-flag": (["--restarts", "0"], "restarts"),
    "restarts-list": (["--option", "restarts=[1,2]"], "restarts"),
    "iterations-huge": (["--option", "iterations=99999999999999999999"], "iterations"),
    "iterations-flag-huge": (["--iterations", "99999999999999999999"], "iterations"),
    "lr-nan": (["--option", "lr=NaN"], "lr"),
    "lr-infinity": (["--option", "lr=Infinity"], "lr"),
    "lr-overflow": (["--option", "lr=1e999"], "lr"),
    "lr-word": (["--option", "lr=fast"], "lr"),
    "lr-negative": (["--option", "lr=-1"], "lr"),
    "boxed-int": (["--option", "boxed=1"], "boxed"),
    "distance-unknown": (["--option", "distance=l3"], "distance"),
    "distance-number": (["--option", "distance=2"], "distance"),
    "option-misspelled": (["--option", "iteratons=5"], "did you mean 'iterations'"),
    "option-no-equals": (["--option", "iterations"], "key=value"),
    "option-empty-key": (["--option", "=5"], "key=value"),
    "precision-unknown": (["--option", "precision=float16"], "precision"),
}

SCENARIO_CASES = {
    "dataset-misspelled": (["--dataset", "digts", "--model", "lenet"], "did you mean 'digits'"),
    "model-misspelled": (["--dataset", "digits", "--model", "lenett"], "did you mean 'lenet'"),
    "batch-size-zero": (["--dataset", "digits", "--model", "lenet", "--batch-size", "0"], "batch"),
    "batch-size-negative": (["--dataset", "digits", "--model", "lenet", "--batch-size", "-2"], "batch"),
    "batch-size-huge": (["--dataset", "digits", "--model", "lenet", "--batch-size", "100000000"], "batch"),
    "batch-size-word": (["--dataset", "digits", "--model", "lenet", "--batch-size", "eight"], "batch-size"),
    "protocol-misspelled": (["--dataset", "digits", "--model", "lenet", "--protocol", "fedavgg"], "did you mean 'fedavg'"),
    "local-lr-nan": (["--dataset", "digits", "--model", "lenet", "--protocol", "fedavg", "--local-lr", "nan"], "lr"),
    "local-epochs-zero": (["--dataset", "digits", "--model", "lenet", "--protocol", "fedavg", "--local-epochs", "0"],
                          "local_epochs"),
    "image-size-zero": (["--dataset", "digits", "--model", "lenet", "--image-size", "0"], "image"),
    "image-size-negative": (["--dataset", "histology", "--model", "lenet", "--image-size", "-5"], "image"),
    "trained-steps-negative": (["--dataset", "digits", "--model", "lenet", "--trained-steps", "-1"], "trained-steps"),
    "defense-misspelled": (["--dataset", "digits", "--model", "lenet", "--defense", "noize:0.1"], "did you mean 'noise'"),
    "defense-value-word": (["--dataset", "digits", "--model", "lenet", "--defense", "noise:abc"], "abc"),
    "defense-value-negative": (["--dataset", "digits", "--model", "lenet", "--defense", "noise:-1"], "noise"),
    "defense-value-inf": (["--dataset", "digits", "--model", "lenet", "--defense", "noise:inf"], "finite"),
    "model-option-choice": (["--dataset", "digits", "--model", "lenet", "--model-option", "init=bogus"], "init"),
    "model-option-misspelled": (["--dataset", "digits", "--model", "lenet", "--model-option", "inti=uniform"],
                                "did you mean 'init'"),
    "model-option-no-equals": (["--dataset", "digits", "--model", "lenet", "--model-option", "init"], "key=value"),
    "medmnist-flag-unknown": (["--dataset", "medmnist:bloodmnistt", "--model", "lenet"], "bloodmnistt"),
    "medmnist-root-missing": (["--dataset", "medmnist:bloodmnist", "--model", "lenet", "--data-root",
                               "/nonexistent/medmnist"], "/nonexistent/medmnist"),
    "seed-word": (["--dataset", "digits", "--model", "lenet", "--seed", "x"], "seed"),
    "seed-negative": (["--dataset", "digits", "--model", "lenet", "--seed", "-5"], "seed"),
    "seed-huge": (["--dataset", "digits", "--model", "lenet", "--seed", "99999999999999999999999"], "seed"),
    "local-epochs-huge": (["--dataset", "digits", "--model", "lenet", "--protocol", "fedavg", "--local-epochs",
                           "99999999999999999999"], "local-epochs"),
    "trained-steps-huge": (["--dataset", "digits", "--model", "lenet", "--trained-steps", "99999999999999999999"],
                           "trained-steps"),
}


@pytest.mark.parametrize("content,needle", [
    ('{"format": "gradleak.tabular-weights", "weights": {"tv_weight": "abc"}}', "tv_weight"),
    ('{"format": "gradleak.tabular-weights", "weights": {}, "prior": "x"}', "prior"),
    ("not json", "json"),
], ids=["weights-value-word", "weights-prior-garbage", "weights-not-json"])
def test_malformed_tabular_weights_file(tmp_path, refused, content, needle):
    from gradleak.attacks.tabular import WEIGHTS_FORMAT

    weights = tmp_path / "weights.json"
    weights.write_text(content.replace("gradleak.tabular-weights", WEIGHTS_FORMAT))
    out = tmp_path / "out"
    refused(["attack", "--dataset", "breast-cancer", "--model", "mlp", "--attack", "tabular", "--option",
             f"weights_file={weights}", "--quiet", "--out", out], out=out, needle=needle)


@pytest.mark.parametrize("extra,needle", list(ATTACK_OPTION_CASES.values()), ids=list(ATTACK_OPTION_CASES))
def test_malformed_attack_option(tmp_path, refused, extra, needle):
    out = tmp_path / "out"
    refused(["attack", *SIMULATED, "--attack", "idlg", *extra, "--out", out], out=out, needle=needle)


@pytest.mark.parametrize("argv,needle", list(SCENARIO_CASES.values()), ids=list(SCENARIO_CASES))
def test_malformed_scenario(tmp_path, refused, argv, needle):
    out = tmp_path / "out"
    refused(["observe", *argv, "--quiet", "--out", out], out=out, needle=needle)


@pytest.mark.parametrize("argv,needle", [
    (["attack", *SIMULATED, "--attack", "idgl"], "did you mean 'idlg'"),
    (["attack", *SIMULATED, "--attack", "ig", "--option", "tv_weight=-1"], "tv_weight"),
    (["attack", *SIMULATED, "--attack", "giz", "--prior", "/nonexistent/prior"], "/nonexistent/prior"),
    (["attack", *SIMULATED, "--attack", "idlg", "--prior", "/nonexistent/prior"], "prior"),
    (["defend", "--dataset", "digits", "--model", "lenet", "--defenses", "noize:0.1", "--quick"], "did you mean 'noise'"),
    (["defend", "--dataset", "digits", "--model", "lenet", "--defenses", "noise:0.1", "--victims", "0"], "victims"),
    (["rank", "--model", "lenet", "--input-shape", "1,x,8"], "input-shape"),
    (["rank", "--model", "lenett", "--input-shape", "1,8,8"], "did you mean 'lenet'"),
    (["rank", "--model", "lenet", "--input-shape", "1,100000,100000", "--no-numerical"], "input-shape"),
    (["attack", *SIMULATED, "--attack", "hgap", "--option", "optimiser_options=5"], "optimiser_options"),
    (["audit", "--batch-sizes", "0", "--budget", "quick", "--quiet"], "batch"),
    (["prior", "train", "--dataset", "digits", "--arch", "dcgna", "--quiet"], "did you mean 'dcgan'"),
    (["sweep", "grid.yaml", "--executor", "rayy"], ("grid", "did you mean 'ray'")),
], ids=["attack-misspelled", "tv-weight-negative", "prior-missing", "prior-not-applicable", "defend-misspelled",
        "defend-victims-zero", "rank-shape", "rank-model-misspelled", "rank-shape-huge", "hgap-options-not-object",
        "audit-batch-zero", "prior-arch-misspelled", "sweep-executor-misspelled"])
def test_malformed_other_commands(tmp_path, refused, argv, needle):
    out = tmp_path / "out"
    refused([*argv, "--out", out], out=out, needle=needle)


@pytest.mark.parametrize("argv,needle", [
    (["atack", "--attack", "idlg"], "did you mean 'attack'"),
    (["observe", "--dataset", "digits", "--model", "lenet", "--batchsize", "2"], "did you mean '--batch-size'"),
    (["attack", "--attack", "idlg", "--device", "cdua"], "did you mean 'cuda'"),
], ids=["command-misspelled", "flag-misspelled", "choice-misspelled"])
def test_argparse_errors_suggest(tmp_path, refused, argv, needle):
    out = tmp_path / "out"
    refused([*argv, "--out", out], out=out, needle=needle)
