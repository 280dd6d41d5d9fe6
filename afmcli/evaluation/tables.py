"""The evaluation's tables as plain rows of text: `afm evaluate` prints them with rich
(afmcli/commands/tables.py), the report page writes them as HTML (afmcli/viz/report.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from afmcli.evaluation.analysis import BACKGROUND, STEPS, Analysis
from afmcli.evaluation.metrics import Metrics
from afmcli.evaluation.visdrone import round_percent

VIEW_TITLES = {"visdrone": "VisDrone toolkit (official)", "coco": "COCO view"}
# The per-class tables keep what fits 80 columns (the json has every number).
CLASS_COLUMNS = ("AP", "AP50", "AP75", "AR100", "AR500", "images", "gt")
# Images listed in the missed-objects table.
TABLE_IMAGES = 20


@dataclass(frozen=True)
class TextTable:
    """``rows`` of cells under ``columns``; ``numeric`` columns align right. ``compact``:
    many narrow count columns (no column lines, so that they fit 80 characters)."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    numeric: tuple[bool, ...]
    compact: bool = False


def percent(v: float | None, visdrone: bool) -> str:
    """A percentage as the toolkit prints it (roundn(v, -2): half away from zero) for the
    VisDrone view, else to two decimals; ``-`` for none."""
    if v is None or math.isnan(v):
        return "-"
    return f"{round_percent(v):.2f}" if visdrone else f"{v:.2f}"


def metric_tables(metrics: Metrics, classwise: bool) -> list[TextTable]:
    """One summary table (a column per view), then, with ``classwise``, one table per view."""
    keys: list[str] = []
    for stats in metrics.stats.values():
        keys += [k for k in stats if k not in keys]
    summary = TextTable(
        f"Detection results, {metrics.num_images} images (%)",
        ("metric", *(VIEW_TITLES[view] for view in metrics.stats)),
        [(key, *(percent(stats.get(key), view == "visdrone") for view, stats in metrics.stats.items()))
         for key in sorted(keys, key=lambda k: (k.startswith("AR"), keys.index(k)))],
        (False, *(True,) * len(metrics.stats)))
    tables = [summary]
    for view, rows in (metrics.per_class.items() if classwise else ()):
        columns = [k for k in next((r for r in rows.values() if r is not None), {}) if k in CLASS_COLUMNS]
        cells = [(cls, *(["-"] * len(columns) if row is None else
                         [str(row[k]) if k in ("images", "gt") else percent(row[k], view == "visdrone")
                          for k in columns])) for cls, row in rows.items()]
        tables.append(TextTable(f"{VIEW_TITLES[view]}, per class (%)", ("class", *columns), cells,
                                (False, *(True,) * len(columns))))
    return tables


def analysis_tables(analysis: Analysis) -> dict[str, TextTable]:
    """Error decomposition per size and per class, the confusion matrix, the worst images."""
    d = analysis.decomposition
    steps = (False, *(True,) * len(STEPS))
    by_size = TextTable("COCO view: error decomposition by size (AP %)", ("objects", *STEPS),
                        [(area, *(percent(row[s], False) for s in STEPS)) for area, row in d.table().items()],
                        steps)
    by_class = TextTable("COCO view: error decomposition by class (AP %)", ("class", *STEPS),
                         [(name, *(percent(d.ap(s, "all", name), False) for s in STEPS)) for name in d.classes],
                         steps)
    labels = [*d.classes, BACKGROUND]
    confusion = TextTable(
        f"COCO view: confusion matrix, IoU 0.5, score >= {analysis.score_thr:g} (rows: objects, columns: detected as)",
        ("", *("bg" if label == BACKGROUND else label[:3] for label in labels)),
        [(label, *(str(n) for n in counts)) for label, counts in zip(labels, analysis.confusion)],
        (False, *(True,) * len(labels)), compact=True)
    columns = ("image", "objects", "TP", "FP", "FN", "FN tiny")
    worst = TextTable(f"Images with the most missed objects (score >= {analysis.score_thr:g}, IoU 0.5)", columns,
                      [tuple(str(v) for v in m.row().values()) for m in analysis.worst_images(TABLE_IMAGES)],
                      (False, *(True,) * (len(columns) - 1)))
    return {"by_size": by_size, "by_class": by_class, "confusion": confusion, "worst": worst}


# --- tracking (afm evaluate --task mot) ----------------------------------------------------------

MOT_SCORES = ("MOTA", "MOTP", "IDF1", "IDP", "IDR", "HOTA", "DetA", "AssA")
MOT_COUNTS = ("GT", "MT", "PT", "ML", "FP", "FN", "IDs", "FM")
MOT_PER_SEQUENCE = ("MOTA", "IDF1", "HOTA", "FP", "FN", "IDs")


def _mot_cell(key: str, value) -> str:
    """Counts as integers, scores with one decimal as the MOT toolkit prints them; ``-`` for NaN."""
    if key in MOT_COUNTS:
        return str(int(value))
    return "-" if math.isnan(value) else f"{value:.1f}"


def mot_tables(result) -> list[TextTable]:
    """A `MotResult` (afmcli.evaluation.mot): scores and counts per class and overall, then
    the main numbers per sequence."""
    per_class = {**result.classes, "overall": result.overall}

    def table(title: str, keys: tuple[str, ...], named: dict) -> TextTable:
        rows = [(name, *(_mot_cell(k, v[k]) for k in keys)) for name, v in named.items()]
        return TextTable(title, ("", *keys), rows, (False, *(True,) * len(keys)))

    return [table("Tracking (VisDrone2019-MOT toolkit; HOTA: TrackEval's), per class (%)", MOT_SCORES, per_class),
            table("Tracking: counts per class (tracks: GT, MT, PT, ML; boxes: FP, FN; IDs, FM)", MOT_COUNTS,
                  per_class),
            table("Tracking, per sequence", MOT_PER_SEQUENCE, result.sequences)]
