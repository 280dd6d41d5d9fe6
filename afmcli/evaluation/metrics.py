"""Both views' numbers for a set of images: what `afm evaluate` prints and its --json
writes, and what :func:`afmcli.evaluate` returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from afmcli.errors import ParameterError, warn
from afmcli.evaluation.categories import VISDRONE_TABLE, CategoryTable
from afmcli.evaluation.visdrone import ImageRows, VisDroneResult, evaluate_visdrone

VIEWS = ("visdrone", "coco", "both")


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise ParameterError(f"{{view}} must be one of {', '.join(VIEWS)}, got {view!r}", "view")


@dataclass
class Metrics:
    """``stats[view]``: the summary numbers (percent); ``per_class[view][class]``: a row of
    numbers, or None for a class without ground truth; ``visdrone``: the toolkit's full
    result (PR curves), when computed; ``coco_pr``: the COCO view's PR curve at IoU 0.5
    per class, when computed; ``classes``: the class names, in the table's order."""

    num_images: int
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    per_class: dict[str, dict[str, dict | None]] = field(default_factory=dict)
    visdrone: VisDroneResult | None = None
    coco_pr: dict = field(default_factory=dict, repr=False)
    classes: tuple[str, ...] = VISDRONE_TABLE.names

    def to_json(self) -> dict:
        """``{view: stats, ..., "classwise": {view: {class: row}}}``, NaN as None (JSON has no NaN)."""
        out = {view: {k: _json_number(v) for k, v in stats.items()} for view, stats in self.stats.items()}
        out["classwise"] = {view: {cls: None if row is None else {k: _json_number(v) for k, v in row.items()}
                                   for cls, row in rows.items()} for view, rows in self.per_class.items()}
        return out


def _json_number(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _not_visdrone(table: CategoryTable) -> str:
    return (f"the VisDrone view does not apply: the toolkit scores VisDrone's ten classes by their ids, and the "
            f"ground truth's table is another ({table.describe()})")


def check_view_applies(view: str, table: CategoryTable) -> None:
    """Refuse ``view`` visdrone for a table other than VisDrone's (before any work)."""
    check_view(view)
    if view == "visdrone" and not table.visdrone:
        raise ParameterError(f"{_not_visdrone(table)}; use {{view}} coco", "view")


def visdrone_view_applies(view: str, table: CategoryTable) -> bool:
    """The toolkit scores VisDrone's ten classes by their ids, nothing else: for another
    table ``view`` visdrone is refused, and both is the COCO view with one line saying why."""
    check_view_applies(view, table)
    if table.visdrone:
        return view in ("visdrone", "both")
    if view == "both":
        warn(f"{_not_visdrone(table)}; the COCO view only")
    return False


def compute_metrics(images: Sequence[ImageRows], view: str = "both", pr_curves: bool = False,
                    table: CategoryTable = VISDRONE_TABLE, size_ranges: str = "coco") -> Metrics:
    """The views ``view`` names; ``pr_curves`` runs the VisDrone view for its curves whatever the
    view (for VisDrone's table; the COCO view's curves are always kept). ``table``: the ground
    truth's categories (rows numbered 1..K); ``size_ranges``: the COCO view's (coco or aitod)."""
    from afmcli.evaluation.coco_view import check_size_ranges

    check_view(view)
    check_size_ranges(size_ranges)
    metrics = Metrics(len(images), classes=table.names)
    visdrone = visdrone_view_applies(view, table)
    if visdrone or (pr_curves and table.visdrone):
        metrics.visdrone = evaluate_visdrone(images)
    if visdrone:
        metrics.stats["visdrone"] = metrics.visdrone.stats
        metrics.per_class["visdrone"] = metrics.visdrone.classwise()
    if view in ("coco", "both"):
        from afmcli.evaluation.coco_view import coco_summary, coco_view_datasets, pr_at_50, run_coco_eval

        evaluator = run_coco_eval(*coco_view_datasets(images, table.names), ranges=size_ranges)
        metrics.stats["coco"], metrics.per_class["coco"] = coco_summary(evaluator, table.names)
        metrics.coco_pr = pr_at_50(evaluator, table.names)
    return metrics
