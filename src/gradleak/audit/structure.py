"""The audit's attack-free stage: the model's rank analysis (R-GAP, Zhu & Blaschko 2021).

Uses ``gradleak.analysis.rank.rank_analysis`` (contract in the R-GAP issue); when this
version has no rank analysis, or the model has layers it does not cover, the stage says so
instead of failing the audit.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import GradleakError
from ..models import create_model
from ..models.base import ModelSpec


def rank_stage(spec: ModelSpec) -> dict[str, Any]:
    """``{"status": "ok", "index", "full_rank", "verdict", "layers", "disaggregation"}`` or a status with
    the reason (``disaggregation``: up to which batch a linear+ReLU layer lets SPEAR split a batch)."""
    from ..analysis.disaggregation import disaggregation_analysis

    split = disaggregation_analysis(create_model(spec), input_shape=tuple(spec.input_shape))
    out = _rgap_rank(spec)
    out["disaggregation"] = None if split is None else split.to_json()
    return out


def _rgap_rank(spec: ModelSpec) -> dict[str, Any]:
    try:
        module = importlib.import_module("gradleak.analysis.rank")
        rank_analysis = module.rank_analysis
    except (ImportError, AttributeError) as exc:
        return {"status": "unavailable", "reason": f"this version has no rank analysis ({exc.__class__.__name__})"}
    model = create_model(spec).eval()
    try:
        report = rank_analysis(model, input_shape=tuple(spec.input_shape))
    except GradleakError as exc:
        return {"status": "not applicable", "reason": str(exc)}
    data = report.to_json()
    return {"status": "ok", "index": report.index, "full_rank": bool(report.full_rank), "verdict": report.verdict,
            "layers": data.get("layers", []), "details": data}
