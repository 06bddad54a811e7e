"""MIMIC-III benchmark reader and discretizer, the synthetic generator, CSV and breast-cancer tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gradleak.cli import main
from gradleak.data import load_dataset
from gradleak.data.ihm_synthetic import write_benchmark
from gradleak.data.mimic3 import CHANNELS, NORMAL_VALUES, SCHEMA, discretize_episode, load_benchmark, read_split
from gradleak.errors import DataError

COL = {name: i for i, name in enumerate(SCHEMA.column_names)}


def write_episode(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> None:
    header = header or ["Hours", *CHANNELS]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(h, "") for h in header])


def write_split(root: Path, split: str, episodes: dict[str, tuple[list[dict[str, str]], int]]) -> None:
    folder = root / "in-hospital-mortality" / split
    folder.mkdir(parents=True)
    for name, (rows, _) in episodes.items():
        write_episode(folder / name, rows)
    with (folder / "listfile.csv").open("w") as handle:
        handle.write("stay,y_true\n" + "".join(f"{n},{y}\n" for n, (_, y) in episodes.items()))


def test_schema_is_48_by_76_with_59_values_and_17_masks():
    assert SCHEMA.record_shape == (48, 76)
    assert int(SCHEMA.column_mask("binary").sum()) == 17
    assert int(SCHEMA.column_mask("continuous").sum()) == 12
    assert int(SCHEMA.column_mask("categorical").sum()) == 47
    assert SCHEMA.column_names[59] == "mask->Capillary refill rate"


def test_discretizer_bins_last_value_previous_imputation_and_masks(tmp_path):
    path = tmp_path / "1_episode1_timeseries.csv"
    write_episode(path, [
        {"Hours": "0.5", "Heart Rate": "80"},
        {"Hours": "0.9", "Heart Rate": "90", "Glascow coma scale total": "15.0"},  # same bin: last wins
        {"Hours": "3.2", "Heart Rate": "100", "Glascow coma scale eye opening": "To Pain"},
        {"Hours": "47.5", "pH": "7.2"},
        {"Hours": "60", "Heart Rate": "200"},  # after 48 h: ignored
    ])
    x = discretize_episode(path)
    assert x.shape == (48, 76)
    hr = x[:, COL["Heart Rate"]]
    assert hr[0] == 90 and hr[1] == 90 and hr[2] == 90 and hr[3] == 100 and hr[47] == 100
    assert x[0, COL["mask->Heart Rate"]] == 1 and x[1, COL["mask->Heart Rate"]] == 0 and x[3, COL["mask->Heart Rate"]] == 1
    # before the first observation: the normal value, unmasked
    assert x[0, COL["pH"]] == float(NORMAL_VALUES["pH"]) and x[47, COL["pH"]] == pytest.approx(7.2)
    assert x[46, COL["pH"]] == float(NORMAL_VALUES["pH"]) and x[47, COL["mask->pH"]] == 1
    eye = [i for n, i in COL.items() if n.startswith("Glascow coma scale eye opening->")]
    assert x[0, eye].sum() == 1 and x[0, COL["Glascow coma scale eye opening->4 Spontaneously"]] == 1  # normal
    assert x[3, COL["Glascow coma scale eye opening->To Pain"]] == 1 and x[3, eye].sum() == 1
    assert x[0, COL["Glascow coma scale total->15"]] == 1  # "15.0" matches category "15"
    assert set(np.unique(x[:, 59:])) <= {0.0, 1.0}


def test_benchmark_standardised_with_train_statistics(tmp_path):
    write_split(tmp_path, "train", {"1_episode1_timeseries.csv": ([{"Hours": "1", "Heart Rate": "80"}], 0),
                                    "2_episode1_timeseries.csv": ([{"Hours": "1", "Heart Rate": "120"}], 1)})
    write_split(tmp_path, "test", {"3_episode1_timeseries.csv": ([{"Hours": "1", "Heart Rate": "100"}], 1)})
    train = load_benchmark(tmp_path, split="train", name="t", source="s")
    test = load_benchmark(tmp_path / "in-hospital-mortality", split="test", name="t", source="s")
    assert train.inputs.shape == (2, 48, 76) and train.kind == "timeseries"
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [1]
    hr = COL["Heart Rate"]
    assert float(train.inputs[:, :, hr].mean()) == pytest.approx(0.0, abs=1e-5)
    mean = train.meta["schema"]["mean"][hr]
    assert mean == pytest.approx(float(np.mean(read_split(tmp_path / "in-hospital-mortality", "train")[0][:, :, hr])))
    std = train.meta["schema"]["std"][hr]
    assert float(test.inputs[0, 5, hr]) == pytest.approx((100 - mean) / std, rel=1e-5)  # train stats on test
    assert torch.equal(test.inputs[0, :, 59:], torch.from_numpy(read_split(tmp_path / "in-hospital-mortality", "test")[0][0, :, 59:]))


@pytest.mark.parametrize("problem,needle", [
    ("listfile", "listfile.csv"),
    ("column", "_timeseries.csv:1: unknown column 'Heart rate'"),
    ("value", "_timeseries.csv:3: non-numeric value 'fast'"),
    ("category", "_timeseries.csv:2: unknown value 'Maybe'"),
])
def test_malformed_benchmark_errors_name_file_and_line(tmp_path, problem, needle, capsys):
    rows = [{"Hours": "1", "Heart Rate": "80"}, {"Hours": "2", "Heart Rate": "fast" if problem == "value" else "81"}]
    if problem == "category":
        rows[0]["Glascow coma scale eye opening"] = "Maybe"
    write_split(tmp_path, "train", {"1_episode1_timeseries.csv": (rows, 0)})
    folder = tmp_path / "in-hospital-mortality" / "train"
    if problem == "listfile":
        (folder / "listfile.csv").unlink()
    if problem == "column":
        write_episode(folder / "1_episode1_timeseries.csv", rows, header=["Hours", "Heart rate"])
    with pytest.raises(DataError, match="listfile" if problem == "listfile" else "timeseries"):
        load_dataset("mimic3-ihm", data_root=tmp_path)
    out = tmp_path / "out"
    code = main(["attack", "--dataset", "mimic3-ihm", "--data-root", str(tmp_path), "--model", "logreg",
                 "--attack", "tabular", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and needle in err and str(folder) in err
    assert not out.exists()


def test_synthetic_round_trip_is_deterministic_and_valid(tmp_path):
    a = write_benchmark(tmp_path / "a", sizes={"train": 4, "test": 2}, seed=3)
    b = write_benchmark(tmp_path / "b", sizes={"train": 4, "test": 2}, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*.csv"))
    assert len(files) == 8 and files == sorted(p.relative_to(b) for p in b.rglob("*.csv"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    raw, labels, _ = read_split(a, "train")
    assert raw.shape == (4, 48, 76) and set(labels.tolist()) <= {0, 1}
    for start, stop in SCHEMA.groups():  # every one-hot group holds exactly one category
        assert np.all(raw[:, :, start:stop].sum(-1) == 1)
    hr = COL["Heart Rate"]
    assert 30 < raw[:, :, hr].min() and raw[:, :, hr].max() < 200
    assert np.all(raw[:, :, COL["Systolic blood pressure"]] >= 0)


def test_ihm_synthetic_dataset_registered():
    data = load_dataset("ihm-synthetic")
    assert data.inputs.shape[1:] == (48, 76) and data.kind == "timeseries" and data.meta["synthetic"]
    assert "SYNTHETIC" in data.source
    test = load_dataset("ihm-synthetic", split="test")
    assert len(test) < len(data)


def test_csv_table_with_declared_types(tmp_path):
    (tmp_path / "columns.json").write_text(json.dumps(
        {"label": "died", "columns": {"age": "continuous", "smoker": "binary", "stage": "categorical"}}))
    rows = ["age,smoker,stage,died"] + [f"{40 + i},{i % 2},{'ABC'[i % 3]},{i % 2}" for i in range(10)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset("csv", data_root=tmp_path, split="all")
    assert data.inputs.shape == (10, 5) and data.kind == "tabular" and data.class_names == ("0", "1")
    schema = data.meta["schema"]
    assert [f["kind"] for f in schema["features"]] == ["continuous", "binary", "categorical"]
    assert torch.all(data.inputs[:, 2:].sum(1) == 1)
    assert set(data.inputs[:, 1].tolist()) == {0.0, 1.0}
    (tmp_path / "data.csv").write_text("\n".join(rows[:3] + ["x,1,A,0"]) + "\n")
    with pytest.raises(DataError, match=r"data.csv:4: non-numeric value 'x'"):
        load_dataset("csv", data_root=tmp_path)
    (tmp_path / "data.csv").write_text("age,smoker,stage,height,died\n1,0,A,3,0\n")
    with pytest.raises(DataError, match=r"data.csv:1: unknown column 'height'"):
        load_dataset("csv", data_root=tmp_path)


def test_breast_cancer_split_and_standardisation():
    train, test = load_dataset("breast-cancer"), load_dataset("breast-cancer", split="test")
    assert train.inputs.shape == (455, 30) and test.inputs.shape == (114, 30) and train.kind == "tabular"
    assert torch.allclose(train.inputs.mean(0), torch.zeros(30), atol=1e-5)
    assert not torch.allclose(test.inputs.mean(0), torch.zeros(30), atol=1e-3)  # train statistics applied


def reference_discretize(path: Path) -> np.ndarray:
    """The benchmark's Discretizer.transform (timestep 1, start zero, end 48, 'previous'
    imputation, masks stored), written out literally and slowly as an independent check."""
    lines = path.read_text().strip().split("\n")
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    from gradleak.data.mimic3 import CATEGORIES

    begin, width, pos = {}, {}, 0
    for c in CHANNELS:
        begin[c], width[c] = pos, len(CATEGORIES.get(c, ("x",)))
        pos += width[c]
    data = np.zeros((48, pos))
    mask = np.zeros((48, len(CHANNELS)))
    original = [[""] * len(CHANNELS) for _ in range(48)]

    def write(t, channel, value):
        if channel in CATEGORIES:
            data[t, begin[channel]:begin[channel] + width[channel]] = 0
            data[t, begin[channel] + CATEGORIES[channel].index(value)] = 1
        else:
            data[t, begin[channel]] = float(value)

    for row in rows:
        t = float(row[0])
        if t > 48 + 1e-6:
            continue
        b = int(t / 1.0 - 1e-6)
        for j in range(1, len(row)):
            if row[j] == "":
                continue
            c = CHANNELS.index(header[j])
            mask[b, c] = 1
            write(b, header[j], row[j])
            original[b][c] = row[j]
    previous = [[] for _ in CHANNELS]
    for b in range(48):
        for c, channel in enumerate(CHANNELS):
            if mask[b, c]:
                previous[c].append(original[b][c])
                continue
            write(b, channel, previous[c][-1] if previous[c] else NORMAL_VALUES[channel])
    return np.hstack([data, mask])


def test_round_trip_synthetic_files_match_reference_discretizer(tmp_path):
    root = write_benchmark(tmp_path, sizes={"train": 5, "test": 2}, seed=11)
    raw, labels, stays = read_split(root, "train")
    listed = (root / "train" / "listfile.csv").read_text().split()[1:]
    assert [f"{s},{y}" for s, y in zip(stays, labels.tolist())] == listed
    for record, stay in zip(raw, stays):
        np.testing.assert_allclose(record, reference_discretize(root / "train" / stay), rtol=1e-6)
    data = load_benchmark(tmp_path, split="test", name="t", source="s")  # through the Dataset path
    mean, std = np.asarray(data.meta["schema"]["mean"]), np.asarray(data.meta["schema"]["std"])
    test_raw, _, test_stays = read_split(root, "test")
    np.testing.assert_allclose(data.inputs.numpy() * std + mean, test_raw, atol=1e-4)
    np.testing.assert_allclose(test_raw[0], reference_discretize(root / "test" / test_stays[0]), rtol=1e-6)


def test_split_listfiles_give_a_val_split(tmp_path):
    rows = {f"{i}_episode1_timeseries.csv": ([{"Hours": "1", "Heart Rate": str(60 + 10 * i)}], i % 2) for i in range(4)}
    write_split(tmp_path, "train", rows)
    write_split(tmp_path, "test", {"9_episode1_timeseries.csv": ([{"Hours": "1", "Heart Rate": "99"}], 1)})
    task = tmp_path / "in-hospital-mortality"
    with pytest.raises(DataError, match="no val_listfile"):
        load_benchmark(tmp_path, split="val", name="t", source="s")
    (task / "train_listfile.csv").write_text("stay,y_true\n0_episode1_timeseries.csv,0\n1_episode1_timeseries.csv,1\n")
    (task / "val_listfile.csv").write_text("stay,y_true\n2_episode1_timeseries.csv,0\n3_episode1_timeseries.csv,1\n")
    train = load_benchmark(tmp_path, split="train", name="t", source="s")
    val = load_benchmark(tmp_path, split="val", name="t", source="s")
    every = load_benchmark(tmp_path, split="all", name="t", source="s")
    assert len(train) == 2 and len(val) == 2 and len(every) == 5
    hr = COL["Heart Rate"]
    assert train.meta["schema"]["mean"][hr] == pytest.approx(65.0)  # train statistics only (60 and 70)
    std = train.meta["schema"]["std"][hr]
    assert val.inputs[:, 0, hr].tolist() == pytest.approx([(80 - 65) / std, (90 - 65) / std], rel=1e-5)


def test_undecodable_episode_is_a_data_error(tmp_path):
    write_split(tmp_path, "train", {"1_episode1_timeseries.csv": ([{"Hours": "1", "Heart Rate": "80"}], 0)})
    episode = tmp_path / "in-hospital-mortality" / "train" / "1_episode1_timeseries.csv"
    episode.write_bytes(episode.read_bytes() + b"2,\xff\xfe\n")
    with pytest.raises(DataError, match=r"1_episode1_timeseries.csv:\d+: not a readable CSV"):
        load_dataset("mimic3-ihm", data_root=tmp_path)
