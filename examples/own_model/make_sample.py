"""Write a small image folder in the layout ``hospital.py`` reads, so the tutorial runs verbatim.

    python examples/own_model/make_sample.py runs/ward_pngs     # < 5 s

Two sub-folders (``benign/``, ``malignant/``) of 32 px PNG patches cut from the histology slide
that ships with scikit-image (the same pixels as gradleak's ``histology`` data set, relabelled
into folders), 60 per class. Replace the folder with your de-identified images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from gradleak.data import load_dataset

PER_CLASS = 60


def main(out: Path) -> None:
    data = load_dataset("histology", image_size=32)
    for k, name in enumerate(("benign", "malignant")):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        picked = (data.labels == k).nonzero().flatten()[:PER_CLASS]
        for i, index in enumerate(picked.tolist()):
            pixels = (data.inputs[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.png")
    print(f"wrote {2 * PER_CLASS} images into {out}/benign and {out}/malignant")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/own_model/make_sample.py OUT_DIR")
    main(Path(sys.argv[1]))
