"""The one validator for COCO json, ground truth and results, used by every subcommand.

Messages name the file and the record (``images[3]``, ``results[12]``) and say
what is wrong. Python's json reads NaN and Infinity: they are refused here, as
are negative sizes, string or boolean ids and duplicate ids.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afmcli.data.images import check_unique_keys
from afmcli.errors import AfmError
from afmcli.io import read_json

RESULT_KEYS = ("image_id", "category_id", "bbox", "score")
_NUMBER = (int, float)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _box_problem(box) -> str | None:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return f"bbox must be [x, y, width, height], got {str(box)[:60]}"
    if not all(_is_number(v) for v in box):
        return f"bbox must be 4 finite numbers, got {box}"
    if box[2] < 0 or box[3] < 0:
        return f"bbox has a negative width or height: {box}"
    return None


def _records(coco: dict, key: str, source) -> list:
    records = coco.get(key, [])
    if not isinstance(records, list):
        raise AfmError(f"{source}: '{key}' must be a list, got {type(records).__name__}")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise AfmError(f"{source}: {key}[{i}] must be an object, got {str(rec)[:60]}")
    return records


def _check_ids(records: list[dict], key: str, source, label=lambda r: "") -> dict:
    """{id: index}; ids must be integers, unique."""
    index: dict = {}
    for i, rec in enumerate(records):
        if "id" not in rec:
            raise AfmError(f"{source}: {key}[{i}] has no 'id'")
        if not _is_int(rec["id"]):
            raise AfmError(f"{source}: {key}[{i}]: id must be an integer, got {rec['id']!r}")
        if rec["id"] in index:
            j = index[rec["id"]]
            raise AfmError(f"{source}: {key}[{j}]{label(records[j])} and {key}[{i}]{label(rec)} "
                           f"have the same id {rec['id']}")
        index[rec["id"]] = i
    return index


def check_coco_gt(coco, source, need_sizes: bool = True, need_annotations: bool = True) -> dict:
    """Check a COCO ground-truth dict (``images``, ``annotations``, ``categories``).

    Images need an integer id, a file_name and (``need_sizes``) positive integer
    width and height; no two images may share an id or a name (see
    :func:`afmcli.data.images.image_key`). Annotations need unique integer ids, a
    known image_id, an integer category_id (one of ``categories`` when given)
    and a finite, non-negative bbox. Returns ``coco``.
    """
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise AfmError(f"{source}: not a COCO json (needs an 'images' list)")
    if need_annotations and "annotations" not in coco:
        raise AfmError(f"{source}: not a COCO ground-truth json (no 'annotations')")
    images = _records(coco, "images", source)
    for i, img in enumerate(images):
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise AfmError(f"{source}: images[{i}] needs a file_name, got {str(img)[:80]}")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise AfmError(f"{source}: images[{i}]: file_name {name!r} must be relative to the images "
                           "folder, without '..'")
        if need_sizes:
            for key in ("width", "height"):
                if not _is_int(img.get(key)) or img[key] <= 0:
                    raise AfmError(f"{source}: images[{i}] ({name}): {key} must be a positive integer, "
                                   f"got {img.get(key)!r}")
    image_index = _check_ids(images, "images", source, lambda r: f" ({r['file_name']})")
    check_unique_keys((img["file_name"] for img in images), source)

    categories = _records(coco, "categories", source)
    for i, cat in enumerate(categories):
        if not isinstance(cat.get("name"), str):
            raise AfmError(f"{source}: categories[{i}] needs a name, got {str(cat)[:80]}")
    category_ids = _check_ids(categories, "categories", source, lambda r: f" ({r['name']})")

    annotations = _records(coco, "annotations", source)
    _check_ids(annotations, "annotations", source)
    for i, ann in enumerate(annotations):
        where = f"{source}: annotations[{i}] (id {ann['id']})"
        missing = [k for k in ("image_id", "category_id", "bbox") if k not in ann]
        if missing:
            raise AfmError(f"{where} has no '{missing[0]}'")
        if not _is_int(ann["image_id"]) or ann["image_id"] not in image_index:
            raise AfmError(f"{where}: image_id {ann['image_id']!r} is not an id in 'images'")
        if not _is_int(ann["category_id"]):
            raise AfmError(f"{where}: category_id must be an integer, got {ann['category_id']!r}")
        if categories and ann["category_id"] not in category_ids:
            raise AfmError(f"{where}: category_id {ann['category_id']} is not in 'categories'")
        problem = _box_problem(ann["bbox"])
        if problem:
            raise AfmError(f"{where}: {problem}")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise AfmError(f"{where}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
    return coco


def load_coco_gt(path: str | os.PathLike, need_sizes: bool = True, need_annotations: bool = True) -> dict:
    return check_coco_gt(read_json(path), Path(path), need_sizes, need_annotations)


@dataclass(frozen=True)
class Results:
    """A COCO results list as arrays, in file order (bbox as x, y, w, h)."""

    image_ids: np.ndarray     # (N,) int64
    category_ids: np.ndarray  # (N,) int64
    boxes: np.ndarray         # (N, 4) float64
    scores: np.ndarray        # (N,) float64

    def __len__(self) -> int:
        return len(self.scores)


def check_coco_results(results, source) -> Results:
    """Check a COCO results list ([{image_id, category_id, bbox, score}, ...]) and
    return it as arrays; the first bad entry is an AfmError naming its index."""
    if not isinstance(results, list):
        raise AfmError(f"{source}: not a COCO results json (a list of {{image_id, category_id, bbox, "
                       f"score}}), got {type(results).__name__}")
    ids, values = [], []
    for i, r in enumerate(results):
        try:
            image_id, category, box, score = r["image_id"], r["category_id"], r["bbox"], r["score"]
            x, y, w, h = box
        except (KeyError, TypeError, ValueError):
            raise AfmError(f"{source}: results[{i}]: {_result_problem(r)}") from None
        # Exact types: json gives int/float; a bool or a string that numpy would convert is refused.
        if not (type(image_id) is int and type(category) is int and type(score) in _NUMBER
                and type(x) in _NUMBER and type(y) in _NUMBER and type(w) in _NUMBER and type(h) in _NUMBER):
            raise AfmError(f"{source}: results[{i}]: {_result_problem(r)}")
        ids.append((image_id, category))
        values.append((x, y, w, h, score))
    try:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        raise AfmError(f"{source}: an image_id or category_id is too large for an integer id") from None
    values = np.asarray(values, dtype=np.float64).reshape(-1, 5)
    bad = ~np.isfinite(values).all(axis=1) | (values[:, 2] < 0) | (values[:, 3] < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AfmError(f"{source}: results[{i}]: {_result_problem(results[i])}")
    return Results(ids[:, 0], ids[:, 1], values[:, :4], values[:, 4])


def _result_problem(r) -> str:
    """What is wrong with one result entry, in words."""
    if not isinstance(r, dict):
        return f"expected an object {{image_id, category_id, bbox, score}}, got {str(r)[:60]}"
    missing = [k for k in RESULT_KEYS if k not in r]
    if missing:
        return f"has no '{missing[0]}'"
    for key in ("image_id", "category_id"):
        if not _is_int(r[key]):
            return f"{key} must be an integer, got {r[key]!r}"
    problem = _box_problem(r["bbox"])
    if problem:
        return problem
    if not _is_number(r["score"]):
        return f"score must be a finite number, got {r['score']!r}"
    return f"malformed entry {str(r)[:80]}"


def load_coco_results(path: str | os.PathLike) -> Results:
    return check_coco_results(read_json(path), Path(path))
