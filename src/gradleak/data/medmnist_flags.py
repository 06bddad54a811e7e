"""The official 2D MedMNIST flags (v2, and v3 / MedMNIST+ at 64, 128 and 224 px).

Channels, task and class names as documented by the MedMNIST project, so a data set can be
described (``gradleak datasets``) and its files validated without the ``medmnist`` package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MedmnistFlag:
    """What the official files of one flag contain."""

    modality: str  # imaging modality, for one-line descriptions
    channels: int  # 1 (gray: images N x H x W) or 3 (RGB: N x H x W x 3)
    task: str  # "multi-class" | "binary-class" | "ordinal-regression" | "multi-label"
    class_names: tuple[str, ...]  # index -> name (for multi-label: the findings)


_ORGANS = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)  # fmt: skip

FLAGS: dict[str, MedmnistFlag] = {
    "pathmnist": MedmnistFlag(
        "colon pathology (H&E)", 3, "multi-class",
        ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
         "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
    ),
    "chestmnist": MedmnistFlag(
        "chest X-ray", 1, "multi-label",
        ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
         "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
    ),
    "dermamnist": MedmnistFlag(
        "dermatoscope", 3, "multi-class",
        ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
         "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
         "vascular lesions"),
    ),
    "octmnist": MedmnistFlag(
        "retinal OCT", 1, "multi-class",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    ),
    "pneumoniamnist": MedmnistFlag("chest X-ray", 1, "binary-class", ("normal", "pneumonia")),
    "retinamnist": MedmnistFlag(
        "fundus camera", 3, "ordinal-regression",
        ("DR grade 0", "DR grade 1", "DR grade 2", "DR grade 3", "DR grade 4"),
    ),
    "breastmnist": MedmnistFlag("breast ultrasound", 1, "binary-class", ("malignant", "normal, benign")),
    "bloodmnist": MedmnistFlag(
        "blood cell microscope", 3, "multi-class",
        ("basophil", "eosinophil", "erythroblast",
         "immature granulocytes (myelocytes, metamyelocytes and promyelocytes)",
         "lymphocyte", "monocyte", "neutrophil", "platelet"),
    ),
    "tissuemnist": MedmnistFlag(
        "kidney cortex microscope", 1, "multi-class",
        ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
         "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
         "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb"),
    ),
    "organamnist": MedmnistFlag("abdominal CT, axial", 1, "multi-class", _ORGANS),
    "organcmnist": MedmnistFlag("abdominal CT, coronal", 1, "multi-class", _ORGANS),
    "organsmnist": MedmnistFlag("abdominal CT, sagittal", 1, "multi-class", _ORGANS),
}
