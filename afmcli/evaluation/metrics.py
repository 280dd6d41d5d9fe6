"""Both views' numbers for a set of images: what `afm evaluate` prints and its --json
writes, and what :func:`afmcli.evaluate` returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from afmcli.errors import ParameterError
from afmcli.evaluation.visdrone import ImageRows, VisDroneResult, evaluate_visdrone

VIEWS = ("visdrone", "coco", "both")


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise ParameterError(f"{{view}} must be one of {', '.join(VIEWS)}, got {view!r}", "view")


@dataclass
class Metrics:
    """``stats[view]``: the summary numbers (percent); ``per_class[view][class]``: a row of
    numbers, or None for a class without ground truth; ``visdrone``: the toolkit's full
    result (PR curves), when computed."""

    num_images: int
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    per_class: dict[str, dict[str, dict | None]] = field(default_factory=dict)
    visdrone: VisDroneResult | None = None

    def to_json(self) -> dict:
        """``{view: stats, ..., "classwise": {view: {class: row}}}``, NaN as None (JSON has no NaN)."""
        out = {view: {k: _json_number(v) for k, v in stats.items()} for view, stats in self.stats.items()}
        out["classwise"] = {view: {cls: None if row is None else {k: _json_number(v) for k, v in row.items()}
                                   for cls, row in rows.items()} for view, rows in self.per_class.items()}
        return out


def _json_number(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def compute_metrics(images: Sequence[ImageRows], view: str = "both", pr_curves: bool = False) -> Metrics:
    """The views ``view`` names; ``pr_curves`` runs the VisDrone view for its curves whatever the view."""
    check_view(view)
    metrics = Metrics(len(images))
    if view in ("visdrone", "both") or pr_curves:
        metrics.visdrone = evaluate_visdrone(images)
    if view in ("visdrone", "both"):
        metrics.stats["visdrone"] = metrics.visdrone.stats
        metrics.per_class["visdrone"] = metrics.visdrone.classwise()
    if view in ("coco", "both"):
        from afmcli.evaluation.coco_view import evaluate_coco

        metrics.stats["coco"], metrics.per_class["coco"] = evaluate_coco(images)
    return metrics
