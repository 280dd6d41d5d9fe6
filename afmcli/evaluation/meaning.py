"""Checks of meaning, not syntax: are these VisDrone's categories, are the
predictions' ids and boxes in the form the evaluation expects, is every image covered?

A wrong category table or 0-based ids give a plausible-looking AP (100 or 0.25)
with no error anywhere else, so these run on every evaluation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from afmcli.data.visdrone_format import CATEGORY_IDS, CLASSES, IGNORED_REGION, OTHERS
from afmcli.errors import AfmError, few

# Names accepted for VisDrone's ids (compared after lower-casing, '_' and ' ' -> '-').
VISDRONE_NAMES = {IGNORED_REGION: ("ignored-regions", "ignored-region", "ignored", "ignore"),
                  **{cid: (name,) for cid, name in zip(CATEGORY_IDS, CLASSES)},
                  OTHERS: ("others", "other")}
# Below this many boxes the xyxy test says nothing (a few boxes near the corner fit both forms).
MIN_BOXES_FOR_FORM_CHECK = 10
SHOW = 5


def _norm(name: str) -> str:
    return "-".join(name.lower().replace("_", " ").split())


def check_visdrone_categories(categories: Sequence[dict], source) -> None:
    """Refuse a COCO json whose category table is not VisDrone's (ids and names).

    The evaluation scores VisDrone's ids 1..10; a json with its own table (say
    0 = human, 1 = vehicle) would be scored as if 1 meant pedestrian.
    """
    wrong = []
    for cat in categories:
        accepted = VISDRONE_NAMES.get(cat["id"])
        if accepted is None or _norm(cat["name"]) not in accepted:
            visdrone = accepted[0] if accepted else "no such id"
            wrong.append(f"id {cat['id']} is {cat['name']!r} (VisDrone: {visdrone})")
    if wrong:
        raise AfmError(f"{source}: not VisDrone's categories: {'; '.join(wrong[:3])}"
                       f"{' ...' if len(wrong) > 3 else ''}; the evaluation scores VisDrone's ids "
                       f"1..10 ({', '.join(CLASSES[:2])}, ...): convert the labels with "
                       "`afm convert-visdrone`, or map the ids first")


def is_visdrone_table(categories: Sequence[dict]) -> bool:
    """Whether a COCO json's category table is VisDrone's (:func:`check_visdrone_categories`)."""
    try:
        check_visdrone_categories(categories, "")
    except AfmError:
        return False
    return bool(categories)


def category_warning(det_categories: np.ndarray, source, table=None) -> str | None:
    """A warning for detection category ids that are not in the ground truth's table
    (afmcli.evaluation.categories.CategoryTable; VisDrone's by default), naming the
    off-by-one cases."""
    ids_ = tuple(CATEGORY_IDS) if table is None else table.ids
    names = tuple(CLASSES) if table is None else table.names
    cats = np.asarray(det_categories).astype(np.int64)
    unknown = ~np.isin(cats, ids_)
    if not unknown.any():
        return None
    ids = np.unique(cats[unknown])
    listed = few(ids, SHOW)
    owner = "VisDrone's" if table is None or table.visdrone else "the ground truth's"
    contiguous = ids_ == tuple(range(ids_[0], ids_[0] + len(ids_)))
    theirs = f"{ids_[0]}..{ids_[-1]}" if contiguous else few(ids_, SHOW)
    listing = "VisDrone's" if owner == "VisDrone's" else "its ids"
    msg = (f"{source}: {int(unknown.sum())} of {len(cats)} detections have category ids that are not "
           f"in the ground truth ({listed}; {listing} are {theirs}); they are not scored")
    # Every id one off a contiguous table: 0-based ids for a table from 1, or 1-based for one from 0.
    shift = -1 if ids_[0] >= 1 else 1
    if contiguous and np.isin(cats, np.asarray(ids_) + shift).all():
        msg += (f". The ids look {ids_[0] + shift}-based ({ids_[0] + shift}..{ids_[-1] + shift}): {owner} start "
                f"at {ids_[0]} ({names[0]} = {ids_[0]}); {'add 1 to' if shift < 0 else 'subtract 1 from'} every category_id")
    return msg


def box_form_warning(boxes_xywh: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]], source) -> str | None:
    """A warning when the boxes look like [x1, y1, x2, y2] instead of [x, y, w, h].

    In xyxy form the third and fourth numbers are never smaller than the first
    two, and boxes on the right or bottom half then reach past the image edge.
    Real xywh boxes almost never have w >= x and h >= y for every box (only boxes
    in the top-left corner do), so both together are a sound sign.
    """
    n = sum(len(b) for b in boxes_xywh)
    if n < MIN_BOXES_FOR_FORM_CHECK:
        return None
    all_ordered, beyond = True, 0
    for boxes, (width, height) in zip(boxes_xywh, sizes):
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        all_ordered &= bool(((b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])).all())
        beyond += int(((b[:, 0] + b[:, 2] > width * 1.01) | (b[:, 1] + b[:, 3] > height * 1.01)).sum())
    if all_ordered and beyond:
        return (f"{source}: the boxes look like [x1, y1, x2, y2] ({beyond} of {n} reach past the image "
                "edge as [x, y, width, height]); VisDrone and COCO results want [x, y, width, height]")
    return None


def coverage_message(without: Sequence[str], total: int, what: str) -> str:
    """``"3 of 5 <what>: a.jpg, b.jpg, c.jpg"`` (the first few named)."""
    return f"{len(without)} of {total} {what}: {few(without, SHOW)}"
