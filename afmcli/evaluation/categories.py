"""The ground truth's category table, and the one category-id rule checked against it.

The evaluation numbers a table's K categories 1..K in table order (row category k + 1 is
``names[k]``; 0 stays the ignored regions' number, as in VisDrone's rows), whatever its own
ids are (a YOLO-made json has 0 = human). VisDrone's table is its own numbering (ids 1..10).

The rule from the data to every output (afmcli.inference.sources.category_ids): a model's
classes get the ids of a COCO json source's table by name, else 1..K in the model's order;
`afm infer` records the table it used in OUT/categories.json. ``check_prediction_table``
compares that record with the ground truth's table by name, so detections written with
other ids are one error, never a plausible-looking score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from afmcli.data.visdrone_format import CATEGORY_IDS, CLASSES
from afmcli.errors import AfmError, few

# The record of the table a run's detections use, beside predictions.json (and visdrone/).
TABLE_FILE = "categories.json"


@dataclass(frozen=True)
class CategoryTable:
    """``ids``: the ground truth's own category ids, ``names`` theirs, in table order."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def visdrone(self) -> bool:
        return self.ids == tuple(CATEGORY_IDS) and self.names == tuple(CLASSES)

    def indices(self, category_ids: np.ndarray) -> np.ndarray:
        """The evaluation's number 1..K of each id; -1 for an id not in the table."""
        lookup = {cid: k + 1 for k, cid in enumerate(self.ids)}
        return np.asarray([lookup.get(int(c), -1) for c in np.asarray(category_ids).ravel()], dtype=np.float64)

    def to_json(self) -> dict:
        """What OUT/categories.json holds: ``{"categories": [{"id", "name"}, ...]}`` in order."""
        return {"categories": [{"id": int(cid), "name": name} for cid, name in zip(self.ids, self.names)]}

    def describe(self) -> str:
        return few((f"{cid} {name}" for cid, name in zip(self.ids, self.names)), 6)


VISDRONE_TABLE = CategoryTable(tuple(CATEGORY_IDS), tuple(CLASSES))


def table_of(categories: Sequence[Mapping], source) -> CategoryTable:
    """A COCO json's ``categories`` as a table (ids and names unique, at least one)."""
    if not categories:
        raise AfmError(f"{source}: no categories: the evaluation needs the category table")
    ids = [c.get("id") for c in categories]
    names = [c.get("name") for c in categories]
    for what, values in (("id", ids), ("name", names)):
        seen = set()
        for v in values:
            if v in seen:
                raise AfmError(f"{source}: category {what} {v!r} appears twice in the category table")
            seen.add(v)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or \
            not all(isinstance(n, str) and n for n in names):
        raise AfmError(f"{source}: every category needs an integer id and a name")
    return CategoryTable(tuple(ids), tuple(names))


def read_prediction_table(pred) -> CategoryTable | None:
    """The table `afm infer` recorded for ``pred`` (its predictions.json, or a folder of its
    output): OUT/categories.json beside it; None for detections from elsewhere."""
    if not isinstance(pred, (str, Path)):
        return None
    pred = Path(pred)
    for folder in ((pred, pred.parent) if pred.is_dir() else (pred.parent,)):
        path = folder / TABLE_FILE
        if path.is_file():
            try:
                return table_of(json.loads(path.read_text(encoding="utf-8"))["categories"], path)
            except (ValueError, KeyError, TypeError) as exc:
                raise AfmError(f"{path}: not a category table written by afm ({exc})") from None
    return None


def check_prediction_table(pred_table: CategoryTable, gt_table: CategoryTable, pred_source, gt_source) -> None:
    """Refuse detections whose ids mean other classes than the ground truth's: a name at
    another id, or an id that the ground truth gives another name."""
    gt_id = dict(zip(gt_table.names, gt_table.ids))
    gt_name = dict(zip(gt_table.ids, gt_table.names))
    for cid, name in zip(pred_table.ids, pred_table.names):
        if name in gt_id and gt_id[name] != cid:
            problem = f"{name!r} is id {cid} in the detections but {gt_id[name]} in the ground truth"
        elif name not in gt_id and cid in gt_name:
            problem = f"id {cid} is {name!r} in the detections but {gt_name[cid]!r} in the ground truth"
        else:
            continue
        raise AfmError(f"{pred_source}: category ids differ from {gt_source}'s table: {problem} (the detections' "
                       f"table: {pred_table.describe()}); run `afm infer` with that json as the source, so "
                       "that the ids follow its table")
