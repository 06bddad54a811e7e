"""Tests for the dataset registry: embedded sets, MedMNIST .npz reading, errors, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.color import rgb2hed

from gradleak.data import DATASETS, list_datasets, load_dataset, resize_images, to_grayscale
from gradleak.data import histology
from gradleak.data.medmnist_flags import FLAGS
from gradleak.errors import DataError, ShapeError, UnknownNameError

# ---------------------------------------------------------------- helpers


def write_medmnist(
    root: Path,
    flag: str,
    *,
    size: int = 28,
    counts: tuple[int, int, int] = (12, 4, 6),
    seed: int = 0,
    drop: str | None = None,
    **overrides: np.ndarray,
) -> Path:
    """Write a small file in the exact official MedMNIST layout (uint8 images, N x 1 labels)."""
    rng = np.random.default_rng(seed)
    info = FLAGS[flag]
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        shape = (n, size, size) if info.channels == 1 else (n, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, len(info.class_names), size=(n, 1)).astype(np.uint8)
    arrays.update(overrides)
    if drop is not None:
        del arrays[drop]
    root.mkdir(parents=True, exist_ok=True)
    path = root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    np.savez_compressed(path, **arrays)
    return path


UNPICKLED: list[int] = []


def _mark_unpickled() -> int:
    UNPICKLED.append(1)
    return 0


class _Payload:
    """An object whose unpickling would call _mark_unpickled (it must never happen)."""

    def __reduce__(self):
        return (_mark_unpickled, ())


# ---------------------------------------------------------------- histology


@pytest.mark.parametrize("size, count", [(28, 35 * 35), (32, 31 * 31), (64, 15 * 15)])
def test_histology_shapes_and_balance(size: int, count: int) -> None:
    ds = load_dataset("histology", image_size=size)
    assert ds.inputs.shape == (count, 3, size, size)
    assert ds.inputs.dtype == torch.float32 and ds.labels.dtype == torch.int64
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    assert ds.class_names == ("dab_negative", "dab_positive")
    positive = ds.labels.float().mean().item()
    assert 0.3 <= positive <= 0.7
    assert ds.meta["dab_threshold"] == histology.DAB_THRESHOLD
    assert ds.meta["positive_fraction_cutoff"] == histology.POSITIVE_FRACTION
    assert ds.meta["stride"] == size // 2


def test_histology_default_and_grayscale() -> None:
    rgb = load_dataset("histology")
    gray = load_dataset("histology", grayscale=True)
    assert rgb.input_shape == (3, 28, 28)
    assert gray.input_shape == (1, 28, 28)
    assert torch.equal(rgb.labels, gray.labels)  # labels come from the RGB stain, not the gray image
    assert torch.allclose(gray.inputs, to_grayscale(rgb.inputs))


def test_histology_labels_mean_dab_staining() -> None:
    """Positive patches carry more DAB than negative ones, measured on the returned images."""
    ds = load_dataset("histology")
    images = ds.inputs.permute(0, 2, 3, 1).numpy().astype(np.float64)
    dab = np.stack([rgb2hed(img)[..., 2] for img in images])
    mean_dab = torch.from_numpy(dab.mean(axis=(1, 2)))
    pos, neg = mean_dab[ds.labels == 1], mean_dab[ds.labels == 0]
    assert pos.mean() > 2 * neg.mean()
    assert pos.median() > histology.DAB_THRESHOLD > neg.median()


def test_histology_labels_match_slow_reference() -> None:
    """The vectorised patch cutting + rule equals an explicit loop over patch origins."""
    from skimage import data

    rgb = data.immunohistochemistry()
    dab = rgb2hed(rgb)[..., 2]
    size, stride = 32, 16
    expected_labels, expected_first = [], None
    for top in range(0, rgb.shape[0] - size + 1, stride):
        for left in range(0, rgb.shape[1] - size + 1, stride):
            stained = (dab[top : top + size, left : left + size] > 0.03).mean()
            expected_labels.append(int(stained > 0.5))
            if expected_first is None:
                expected_first = rgb[top : top + size, left : left + size]
    ds = load_dataset("histology", image_size=32)
    assert ds.labels.tolist() == expected_labels
    last = rgb[-size:, -size:].astype(np.float32) / 255
    assert np.array_equal(ds.inputs[-1].permute(1, 2, 0).numpy(), last)
    assert np.array_equal(ds.inputs[0].permute(1, 2, 0).numpy(), expected_first.astype(np.float32) / 255)


def test_histology_rejects_other_sizes() -> None:
    with pytest.raises(ShapeError, match=r"48.*28, 32, 64"):
        load_dataset("histology", image_size=48)


def test_allred_scores_by_hand() -> None:
    """Proportion score (share of stained pixels) + intensity score (mean density of those pixels)."""
    t = histology.DAB_THRESHOLD
    maps = np.zeros((5, 10, 10))
    maps[1, 0, 0] = 0.09  # 1 % stained, moderate: proportion 2 (1-10 %) + intensity 2 = 4
    maps[2, :5] = 0.07  # 50 % stained, weak: 4 + 1 = 5
    maps[3] = 0.12  # all stained, strong: 5 + 3 = 8
    maps[4, :2] = t / 2  # below the threshold: nothing stained, score 0
    assert histology.allred_scores(maps).tolist() == [0, 4, 5, 8, 0]


@pytest.mark.parametrize("size", [28, 32, 64])
def test_histology_allred_same_patches_nine_classes(size: int) -> None:
    binary = load_dataset("histology", image_size=size)
    graded = load_dataset("histology-allred", image_size=size)
    assert torch.equal(binary.inputs, graded.inputs)
    assert graded.class_names == tuple(f"allred_{k}" for k in range(9))
    counts = torch.bincount(graded.labels, minlength=9)
    assert counts[1] == 0 and int((counts > 0).sum()) == 8  # a score of 1 cannot occur
    assert counts.tolist() == graded.meta["class_counts"]
    # the grade agrees with the binary label where the two rules overlap: >67 % stained is positive
    assert bool((binary.labels[graded.labels >= 6] == 1).float().mean() > 0.8)
    assert bool((binary.labels[graded.labels == 0] == 0).all())


def test_histology_allred_listed_and_sized() -> None:
    listed = {d["name"]: d for d in list_datasets()}
    assert listed["histology-allred"]["classes"] == 9
    with pytest.raises(ShapeError, match=r"histology-allred image_size 48"):
        load_dataset("histology-allred", image_size=48)


# ---------------------------------------------------------------- faces and digits


def test_faces() -> None:
    ds = load_dataset("faces")
    assert ds.inputs.shape == (200, 1, 25, 25)
    assert ds.class_names == ("non_face", "face")
    assert ds.labels[:100].eq(1).all() and ds.labels[100:].eq(0).all()
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    assert ds.inputs.max() > 0.5  # scaled once, not twice
    big = load_dataset("faces", image_size=32)
    assert big.inputs.shape == (200, 1, 32, 32)
    assert 0.0 <= big.inputs.min() and big.inputs.max() <= 1.0
    assert torch.equal(big.labels, ds.labels)


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.inputs.shape == (1797, 1, 8, 8)
    assert ds.num_classes == 10
    assert ds.inputs.min() == 0.0 and ds.inputs.max() == 1.0
    assert ds.labels.dtype == torch.int64 and set(ds.labels.tolist()) == set(range(10))
    assert load_dataset("digits", image_size=16).input_shape == (1, 16, 16)


def test_resize_helper_keeps_range_and_identity() -> None:
    x = torch.rand(3, 2, 10, 10, generator=torch.Generator().manual_seed(0))
    assert resize_images(x, 10) is x
    for size in (4, 23):
        y = resize_images(x, size)
        assert y.shape == (3, 2, size, size) and 0.0 <= y.min() and y.max() <= 1.0
    constant = torch.full((1, 1, 9, 9), 0.25)
    assert torch.allclose(resize_images(constant, 5), torch.full((1, 1, 5, 5), 0.25))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "28"])
def test_bad_image_size(bad: object) -> None:
    with pytest.raises(ShapeError, match="image_size"):
        load_dataset("digits", image_size=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- registry-level behaviour


@pytest.mark.parametrize(
    "name, kwargs", [("histology", {}), ("faces", {"image_size": 20}), ("digits", {"image_size": 12})]
)
def test_deterministic(name: str, kwargs: dict) -> None:
    a, b = load_dataset(name, **kwargs), load_dataset(name, **kwargs)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)


def test_medmnist_deterministic(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "dermamnist")
    a = load_dataset("medmnist:dermamnist", data_root=tmp_path, image_size=40)
    b = load_dataset("medmnist:dermamnist", data_root=str(tmp_path), image_size=40)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)


def test_list_datasets_needs_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty home: no ~/.medmnist
    rows = list_datasets()
    assert len(rows) == len(DATASETS.names())
    by_name = {row["name"]: row for row in rows}
    assert {"histology", "faces", "digits", "medmnist:<flag>"} <= set(by_name)
    for row in rows:
        assert {"name", "shape", "classes", "source"} <= set(row)
        assert isinstance(row["source"], str) and "\n" not in row["source"]
    assert by_name["histology"]["shape"] == (3, 28, 28) and by_name["histology"]["classes"] == 2
    assert by_name["digits"]["classes"] == 10
    assert by_name["medmnist:<flag>"]["shape"] == ("1|3", 28, 28)
    for row in rows:  # the CLI prints shapes as "x".join(map(str, shape))
        assert isinstance(row["shape"], tuple) and 1 <= len(row["shape"]) <= 3  # images C,H,W; records T,F or F
    assert "pathmnist" in by_name["medmnist:<flag>"]["variants"]


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert "'cifar10'" in message
    for name in ("histology", "faces", "digits", "medmnist:<flag>", "pathmnist"):
        assert name in message
    assert "\n" not in message


def test_variant_errors() -> None:
    with pytest.raises(UnknownNameError, match=r"'pathmnistt'.*medmnist:pathmnist.*"):
        load_dataset("medmnist:pathmnistt")
    with pytest.raises(UnknownNameError, match="medmnist:breastmnist"):
        load_dataset("medmnist")
    with pytest.raises(UnknownNameError, match="no ':<variant>'"):
        load_dataset("digits:big")


def test_unknown_split() -> None:
    with pytest.raises(DataError, match=r"'dev'.*train, val, test, all"):
        load_dataset("digits", split="dev")


def test_sample_batch() -> None:
    ds = load_dataset("faces")
    x, y, idx = ds.sample_batch(4, generator=torch.Generator().manual_seed(1))
    assert x.shape == (4, 1, 25, 25) and torch.equal(y, ds.labels[idx])
    with pytest.raises(ShapeError, match="201"):
        ds.sample_batch(201, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ShapeError):
        ds.sample_batch(0, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- medmnist


def test_medmnist_gray_28(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "breastmnist", counts=(12, 4, 6))
    ds = load_dataset("medmnist:breastmnist", data_root=tmp_path)
    assert ds.name == "medmnist:breastmnist"
    assert ds.inputs.shape == (12, 1, 28, 28) and ds.inputs.dtype == torch.float32
    assert ds.labels.shape == (12,) and ds.labels.dtype == torch.int64
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    assert ds.class_names == ("malignant", "normal, benign")
    raw = np.load(tmp_path / "breastmnist.npz")
    assert np.array_equal((ds.inputs[:, 0] * 255).round().numpy().astype(np.uint8), raw["train_images"])
    assert ds.labels.tolist() == raw["train_labels"][:, 0].tolist()


def test_medmnist_rgb_64_and_splits(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "bloodmnist", size=64, counts=(5, 3, 2))
    train = load_dataset("medmnist:bloodmnist", data_root=tmp_path, image_size=64)
    assert train.inputs.shape == (5, 3, 64, 64) and train.num_classes == 8
    raw = np.load(tmp_path / "bloodmnist_64.npz")
    assert np.array_equal(
        (train.inputs * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), raw["train_images"]
    )
    assert len(load_dataset("medmnist:bloodmnist", data_root=tmp_path, image_size=64, split="val")) == 3
    test = load_dataset("medmnist:bloodmnist", data_root=tmp_path, image_size=64, split="test")
    assert len(test) == 2
    every = load_dataset("medmnist:bloodmnist", data_root=tmp_path, image_size=64, split="all")
    assert len(every) == 10 and torch.equal(every.inputs[-2:], test.inputs)
    gray = load_dataset("medmnist:bloodmnist", data_root=tmp_path, image_size=64, grayscale=True)
    assert gray.input_shape == (1, 64, 64)


def test_medmnist_resizes_non_native_sizes_from_28px_file(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "pathmnist")
    ds = load_dataset("medmnist:pathmnist", data_root=tmp_path, image_size=32)
    assert ds.input_shape == (3, 32, 32) and ds.meta["file_size"] == 28 and ds.meta["resized"]
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0


def test_medmnist_default_root_is_home_medmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_medmnist(tmp_path / ".medmnist", "octmnist", counts=(3, 1, 1))
    assert len(load_dataset("medmnist:octmnist")) == 3


def test_medmnist_missing_file_says_what_to_put_where(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "pneumoniamnist")  # 28 px exists, 128 px does not
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:pneumoniamnist", data_root=tmp_path, image_size=128)
    message = str(info.value)
    assert "'pneumoniamnist_128.npz'" in message and str(tmp_path) in message
    assert "zenodo" in message.lower() and "\n" not in message


def test_medmnist_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "retinamnist.npz").write_bytes(b"this is not a zip archive at all")
    with pytest.raises(DataError, match="retinamnist.npz"):
        load_dataset("medmnist:retinamnist", data_root=tmp_path)


def test_medmnist_truncated_zip(tmp_path: Path) -> None:
    path = write_medmnist(tmp_path, "retinamnist")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="retinamnist.npz"):
        load_dataset("medmnist:retinamnist", data_root=tmp_path)


def test_medmnist_single_npy_refused(tmp_path: Path) -> None:
    with open(tmp_path / "organamnist.npz", "wb") as handle:
        np.save(handle, np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="not an .npz archive"):
        load_dataset("medmnist:organamnist", data_root=tmp_path)


def test_medmnist_missing_key(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organcmnist", drop="test_labels")
    with pytest.raises(DataError, match=r"organcmnist.npz.*test_labels"):
        load_dataset("medmnist:organcmnist", data_root=tmp_path)


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"train_images": np.zeros((12, 28, 28), dtype=np.float32)}, "dtype float32, expected uint8"),
        ({"train_images": np.zeros((12, 28, 28, 3), dtype=np.uint8)}, r"shape \(12, 28, 28, 3\)"),
        ({"train_images": np.zeros((12, 64, 64), dtype=np.uint8)}, r"expected N x 28 x 28"),
        ({"train_labels": np.zeros((12, 14), dtype=np.uint8)}, "train_labels has shape"),
        ({"train_labels": np.zeros((11, 1), dtype=np.uint8)}, "train_labels has shape"),
        ({"train_labels": np.full((12, 1), 11, dtype=np.uint8)}, r"values 11\.\.11, expected 0\.\.10"),
        ({"train_labels": np.zeros((12, 1), dtype=np.float64)}, "expected integers"),
    ],
)
def test_medmnist_bad_contents(tmp_path: Path, override: dict, pattern: str) -> None:
    write_medmnist(tmp_path, "organsmnist", **override)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset("medmnist:organsmnist", data_root=tmp_path)
    assert "organsmnist.npz" in str(info.value)


def test_medmnist_flat_labels_accepted(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "organsmnist", train_labels=np.arange(12, dtype=np.int64) % 11)
    assert load_dataset("medmnist:organsmnist", data_root=tmp_path).labels.tolist() == [
        i % 11 for i in range(12)
    ]


def test_medmnist_pickle_refused_and_never_executed(tmp_path: Path) -> None:
    payload = np.array([_Payload(), _Payload()], dtype=object)
    write_medmnist(tmp_path, "tissuemnist", train_labels=payload)  # np.savez pickles object arrays
    UNPICKLED.clear()
    with pytest.raises(DataError, match=r"tissuemnist.npz.*train_labels.*pickle"):
        load_dataset("medmnist:tissuemnist", data_root=tmp_path)
    assert UNPICKLED == []


def test_medmnist_multilabel_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"chestmnist is multi-label.*pathmnist"):
        load_dataset("medmnist:chestmnist", data_root=tmp_path)


def test_medmnist_flag_table() -> None:
    assert len(FLAGS) == 12
    counts = {name: len(flag.class_names) for name, flag in FLAGS.items()}
    assert counts == {
        "pathmnist": 9, "chestmnist": 14, "dermamnist": 7, "octmnist": 4, "pneumoniamnist": 2,
        "retinamnist": 5, "breastmnist": 2, "bloodmnist": 8, "tissuemnist": 8,
        "organamnist": 11, "organcmnist": 11, "organsmnist": 11,
    }  # fmt: skip
    rgb = {name for name, flag in FLAGS.items() if flag.channels == 3}
    assert rgb == {"pathmnist", "dermamnist", "retinamnist", "bloodmnist"}
