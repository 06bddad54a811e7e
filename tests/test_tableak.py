"""The tableak record attack: relaxation, pooling, confidence, the SPEAR-first choice, clinical tables."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from gradleak.attacks import create_attack
from gradleak.attacks.record_pool import pool
from gradleak.attacks.tableak.relax import RelaxedRecords, Temperature
from gradleak.cli import main
from gradleak.data import list_datasets, load_dataset
from gradleak.data.clinical import TABLES, load_table
from gradleak.data.schema import RecordSchema, build_schema
from gradleak.errors import DataError, GradleakError
from gradleak.metrics.tabular import confidence_quartiles, evaluate_records
from gradleak.scenario import Scenario, simulate

SCHEMA = build_schema([("age", "continuous", ()), ("stage", "categorical", ("I", "II", "III")),
                       ("smoker", "binary", ())], time_steps=None)
HAS_LIFELINES = importlib.util.find_spec("lifelines") is not None


def _records(rows: list[tuple[float, int, int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), 5, dtype=torch.float64)
    for i, (age, stage, smoker) in enumerate(rows):
        out[i, 0], out[i, 1 + stage], out[i, 4] = age, 1.0, smoker
    return out


def test_relaxation_blocks_are_distributions_and_project_to_one_hot():
    relax = RelaxedRecords(schema=SCHEMA, lower=torch.full((5,), -2.0), upper=torch.full((5,), 2.0))
    z = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    x = relax.relaxed(z, temperature=0.5)
    assert torch.allclose(x[:, 1:4].sum(1), torch.ones(4, dtype=torch.float64))
    assert bool(((x[:, 4] > 0) & (x[:, 4] < 1)).all()) and torch.equal(x[:, 0], z[:, 0])
    hard = relax.project(z)
    assert torch.equal(hard[:, 1:4].sum(1), torch.ones(4, dtype=torch.float64))
    assert set(hard[:, 4].tolist()) <= {0.0, 1.0}
    relax.clamp_(z)
    assert float(z[:, 0].abs().max()) <= 2.0
    schedule = Temperature(start=1.0, end=0.1, steps=11)
    assert schedule.at(0) == 1.0 and abs(schedule.at(10) - 0.1) < 1e-12 and schedule.at(5) == pytest.approx(0.1 ** 0.5)


def test_pooling_matches_members_votes_and_reports_agreement():
    truth = _records([(0.5, 0, 1), (-1.0, 2, 0), (1.5, 1, 1)])
    members = [truth[[2, 0, 1]], truth[[1, 2, 0]].clone(), truth.clone()]
    members[1][0, 0] += 0.3  # one member disagrees on one continuous value ...
    odd = members[2]
    odd[0, 1:4] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # ... and one on a category
    pooled = pool(members, schema=SCHEMA, reference=0, spread_scale=0.1)
    order = [2, 0, 1]  # the reference's sample order
    assert torch.allclose(pooled.records, truth[order])  # medians and majorities restore the truth
    conf = pooled.confidence
    assert conf.shape == (3, 3)
    disagree_cont = order.index(1)  # truth row 1 got the +0.3
    disagree_cat = order.index(0)
    assert conf[disagree_cont, 0] < 0.5 and conf[disagree_cat, 1] < 0.5
    assert float(conf[disagree_cat, 2]) == 1.0 and float(conf[order.index(2)].min()) == 1.0


def test_confidence_quartiles_rank_hits():
    confidence = torch.arange(8, dtype=torch.float64).reshape(2, 4)
    hits = confidence >= 4
    q = confidence_quartiles(hits, confidence)
    assert q["confidence_q1_accuracy"] == 0.0 and q["confidence_q4_accuracy"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        confidence_quartiles(hits, confidence.T)


def test_config_rejects_bad_values():
    with pytest.raises(GradleakError, match="select"):
        create_attack("tableak", select="best")
    with pytest.raises(GradleakError, match="temperature_end"):
        create_attack("tableak", temperature_end=0)


def _breast(batch: int, hidden: tuple[int, ...] = (64,)):
    return simulate(Scenario(dataset="breast-cancer", model="mlp", batch_size=batch, seed=1,
                             model_options={"hidden": hidden}))


def test_spear_first_returns_certified_batch():
    observation, truth = _breast(4)
    rec = create_attack("tableak", members=1, iterations=5).run(observation)
    m = evaluate_records(reconstruction=rec.inputs, truth=truth.inputs, confidence=rec.confidence)
    assert "all records certified by spear" in rec.notes and m["feature_accuracy"] == 1.0
    assert rec.certified is not None and bool(rec.certified.all())


def test_optimisation_path_reports_confidence_and_uses_no_truth():
    observation, truth = _breast(3)
    rec = create_attack("tableak", members=2, iterations=15, exact="off").run(
        observation, generator=torch.Generator().manual_seed(0))
    assert rec.inputs.shape == truth.inputs.shape and bool(torch.isfinite(rec.inputs).all())
    assert rec.confidence is not None and rec.confidence.shape == (3, 30)
    assert len(rec.restart_losses) == 3 and rec.chosen_restart == 2 and "chosen:" in rec.notes[-1]
    m = evaluate_records(reconstruction=rec.inputs, truth=truth.inputs, confidence=rec.confidence)
    assert 0.0 <= m["confidence_q4_accuracy"] <= 1.0


def test_missing_package_is_one_line_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(DataError, match=r"not installed; pip install 'gradleak\[clinical\]'"):
        load_table(TABLES["gbsg2"], split="train")


def test_clinical_tables_are_listed():
    names = {row["name"] for row in list_datasets()}
    assert {"gbsg2", "actg175", "whas500", "flchain", "ihm-synthetic", "mimic3-ihm"} <= names


@pytest.mark.skipif(not HAS_LIFELINES, reason="lifelines not installed (pip install 'gradleak[clinical]')")
def test_gbsg2_schema_and_cli(tmp_path):
    data = load_dataset("gbsg2", split="all")
    schema = RecordSchema.from_json(data.meta["schema"])
    assert data.inputs.shape == (686, 11) and schema.groups() == [(4, 7)]
    assert {f.kind for f in schema.features} == {"continuous", "binary", "categorical"}
    out = tmp_path / "run"
    code = main(["attack", "--dataset", "gbsg2", "--model", "mlp", "--model-option", "hidden=[32,32]",
                 "--attack", "tableak", "--batch-size", "16", "--iterations", "10", "--option", "members=2",
                 "--seed", "0", "--quiet", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 0 and metrics["feature_accuracy"] is not None
    assert {"confidence_q1_accuracy", "confidence_q4_accuracy"} <= set(metrics)


@pytest.mark.skipif(importlib.util.find_spec("sksurv") is None,
                    reason="scikit-survival not installed (pip install 'gradleak[clinical]')")
def test_survival_package_tables_load():
    whas = load_dataset("whas500")
    assert whas.inputs.shape == (400, 15) and bool(torch.isfinite(whas.inputs).all())
    flc = load_dataset("flchain", split="all")
    schema = RecordSchema.from_json(flc.meta["schema"])
    assert flc.inputs.shape == (6524, 26) and [f.name for f in schema.features if f.kind == "categorical"] == [
        "sample.yr", "flc.grp"]
    assert "chapter" not in {f.name for f in schema.features}  # recorded only for the dead: would leak the label


def test_certified_records_replace_their_closest_pooled_record():
    from gradleak.attacks.tableak.attack import _with_certified

    pooled = torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]], dtype=torch.float64)
    exact = torch.tensor([[9.1, 9.0], [0.0, 0.0], [5.2, 4.9]], dtype=torch.float64)
    certified = torch.tensor([True, False, True])
    out, slots = _with_certified(pooled, exact, certified)
    assert slots.tolist() == [2, 1]
    assert torch.equal(out[0], pooled[0]) and torch.equal(out[2], exact[0]) and torch.equal(out[1], exact[2])


def test_record_table_shows_values_in_units_and_marks_unsure_cells(tmp_path):
    """#20: the table picture decodes each variable (categories by name, continuous de-standardised)."""
    from gradleak.data import load_dataset
    from gradleak.data.schema import RecordSchema
    from gradleak.report.record_table import cell_text, save_record_table

    data = load_dataset("gbsg2")
    schema = RecordSchema.from_json(data.meta["schema"])
    records = data.inputs[:4]
    raw = schema.denormalise(records)
    for j, f in enumerate(schema.features):
        text = cell_text(records[0], schema, j)
        if f.kind == "continuous":
            assert float(text) == pytest.approx(float(raw[0, f.start]), rel=1e-2)
        elif f.kind == "categorical":
            assert text in f.categories
    confidence = torch.rand(4, len(schema.features), generator=torch.Generator().manual_seed(0))
    hits = confidence > 0.3
    path = save_record_table(records, tmp_path / "t.png", schema=schema, confidence=confidence, hits=hits)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
