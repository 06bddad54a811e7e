"""``medmnist:<flag>``: the official MedMNIST ``.npz`` files, read from a local folder.

Nothing is downloaded. The user fetches the files from the MedMNIST Zenodo record and puts
them in ``data_root`` (default ``~/.medmnist``, where the ``medmnist`` package keeps them).
File names follow MedMNIST v2/v3: ``<flag>.npz`` holds 28 px images, ``<flag>_<size>.npz``
the MedMNIST+ sizes 64, 128 and 224. Each archive holds ``train_images``, ``train_labels``,
``val_images``, ``val_labels``, ``test_images``, ``test_labels``; images are uint8
``N x H x W`` (gray) or ``N x H x W x 3`` (RGB), labels integer ``N x 1``.

``image_size`` None means 28 px; a native size reads its own file; any other size is
resized (bilinear, antialiased) from the 28 px file. ``split`` picks ``train`` (default),
``val``, ``test`` or ``all`` (the three concatenated in that order). The multi-label flag
``chestmnist`` (14 findings per image) is refused: attacks and metrics here assume one class
per image. Files are opened with ``allow_pickle=False``: an archive holding object arrays is
refused, never unpickled, since a data file from elsewhere must not run code.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UnknownNameError
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .medmnist_flags import FLAGS, MedmnistFlag
from .transforms import finish_images, uint8_to_float

NATIVE_SIZES = (28, 64, 128, 224)
DEFAULT_SIZE = 28
SPLIT_KEYS = ("train", "val", "test")
ZENODO = "https://zenodo.org/records/10519652"  # MedMNIST v3 (MedMNIST+) record: all sizes
SOURCE = "MedMNIST v2/v3 official .npz files (Zenodo), read from data_root or ~/.medmnist"
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def default_root() -> Path:
    """Where the ``medmnist`` package stores its files; used when no data_root is given."""
    return Path.home() / ".medmnist"


def file_name(flag: str, size: int) -> str:
    """Official file name of ``flag`` at ``size`` px."""
    return f"{flag}.npz" if size == DEFAULT_SIZE else f"{flag}_{size}.npz"


def read_npz(path: Path, splits: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Check ``path`` has the six official arrays; read those of ``splits``, never unpickling."""
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive with train/val/test arrays")
    keys = [f"{split}_{part}" for split in SPLIT_KEYS for part in ("images", "labels")]
    with archive:
        missing = [key for key in keys if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(archive.files) or 'none'}"
            )
        arrays = {}
        for key in (f"{split}_{part}" for split in splits for part in ("images", "labels")):
            try:
                arrays[key] = archive[key]
            except _READ_ERRORS as exc:
                raise DataError(
                    f"{path}: array {key!r} cannot be read safely ({exc}); object/pickled arrays are refused"
                ) from None
    return arrays


def check_split(
    path: Path, split: str, images: np.ndarray, labels: np.ndarray, flag: MedmnistFlag, size: int
) -> np.ndarray:
    """Validate one split's arrays against the official layout; returns labels as int64 of shape N."""
    expected = (size, size) if flag.channels == 1 else (size, size, 3)
    if images.dtype != np.uint8:
        raise DataError(f"{path}: {split}_images has dtype {images.dtype}, expected uint8")
    if images.ndim != len(expected) + 1 or tuple(images.shape[1:]) != expected:
        raise DataError(
            f"{path}: {split}_images has shape {images.shape}, expected N x {' x '.join(map(str, expected))}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {split}_labels has dtype {labels.dtype}, expected integers")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{path}: {split}_labels has shape {labels.shape}, expected {images.shape[0]} x 1 single labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(flag.class_names)):
        raise DataError(
            f"{path}: {split}_labels has values {labels.min()}..{labels.max()}, "
            f"expected 0..{len(flag.class_names) - 1}"
        )
    return labels.astype(np.int64)


@register_dataset(
    "medmnist",
    shape=("1|3", DEFAULT_SIZE, DEFAULT_SIZE),  # channels depend on the flag; 64/128/224 px too
    classes="2-11 per flag (chestmnist: 14 labels, refused)",
    source=SOURCE,
    variants=tuple(sorted(FLAGS)),
)
def load_medmnist(request: LoadRequest) -> Dataset:
    """Load one flag's split from its local official file."""
    flag_name = request.variant or ""
    if flag_name not in FLAGS:  # load_dataset checks this too; direct callers get the same error
        raise UnknownNameError(f"unknown medmnist flag {flag_name!r}; choose one of: {', '.join(sorted(FLAGS))}")
    flag = FLAGS[flag_name]
    if flag.task == "multi-label":
        single = ", ".join(name for name in sorted(FLAGS) if FLAGS[name].task != "multi-label")
        raise DataError(
            f"medmnist:{flag_name} is multi-label ({len(flag.class_names)} findings per image), "
            f"gradleak needs one class per image; choose one of: {single}"
        )
    size = DEFAULT_SIZE if request.image_size is None else request.image_size
    file_size = size if size in NATIVE_SIZES else DEFAULT_SIZE
    root = request.data_root if request.data_root is not None else default_root()
    path = root / file_name(flag_name, file_size)
    if not path.is_file():
        raise DataError(
            f"medmnist:{flag_name} at {size} px needs the file {path.name!r} in {root}; "
            f"download it from the MedMNIST Zenodo record ({ZENODO}) and put it there"
        )
    splits = SPLIT_KEYS if request.split == "all" else (request.split,)
    arrays = read_npz(path, splits)
    images, labels = [], []
    for split in splits:
        split_images = arrays[f"{split}_images"]
        labels.append(check_split(path, split, split_images, arrays[f"{split}_labels"], flag, file_size))
        images.append(split_images)
    inputs = uint8_to_float(np.concatenate(images))
    inputs = finish_images(inputs, image_size=size, grayscale=request.grayscale)
    return Dataset(
        name=f"medmnist:{flag_name}",
        inputs=inputs,
        labels=torch.from_numpy(np.concatenate(labels)),
        class_names=flag.class_names,
        source=f"MedMNIST {flag_name} ({flag.modality}), {request.split} split of {path}",
        meta={
            "flag": flag_name,
            "task": flag.task,
            "split": request.split,
            "file": str(path),
            "file_size": file_size,
            "resized": size != file_size,
            "split_sizes": {split: int(len(lab)) for split, lab in zip(splits, labels)},
        },
    )
