"""VisDrone rows <-> our COCO json, both ways, as pure functions.

Our COCO json (what `afm convert-visdrone` writes and the evaluation reads):

- ``categories``: ids 1..10 with VisDrone's names (VisDrone's own ids).
- ``images``: ``id``, ``file_name`` (bare name under images/<split>/), ``width``,
  ``height``, ``ignore_regions`` = [[x, y, w, h], ...] of the category-0 rows, raw.
- ``annotations``: ``bbox`` [x, y, w, h] clipped to the image, ``area`` of that box,
  ``iscrowd`` (1 for a score-0 box), ``truncation``, ``occlusion``, and, only when
  clipping changed the box, the original under ``visdrone_bbox``.
- ``others``: the category-11 rows, {id, image_id, bbox (raw), score, truncation,
  occlusion}; not annotations, but kept so the labels can be rebuilt.

Boxes that are empty once clipped are dropped (and counted): nothing can match them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afmcli.data.coco_check import Results, check_coco_results
from afmcli.data.images import image_key
from afmcli.data.visdrone_format import CLASSES, IGNORED_REGION, OTHERS, format_visdrone_lines
from afmcli.errors import AfmError
from afmcli.io import atomic_path

MAX_DETS_PER_IMAGE = 500  # the toolkit reads only the first 500 lines of a result file


def coco_categories(names=None) -> list[dict]:
    """afm's category table: ids 1..K in class order (VisDrone's ten by default, whose own
    ids, CATEGORY_IDS, are 1..10 too)."""
    return [{"id": cid, "name": name, "supercategory": "object"}
            for cid, name in enumerate(CLASSES if names is None else names, start=1)]


def _num(v: float) -> int | float:
    """JSON number: an int when integral (VisDrone labels are), else the float."""
    v = float(v)
    return int(v) if v.is_integer() else v


@dataclass
class ImageLabels:
    """One image's labels in COCO form, before ids are given to annotations."""

    annotations: list[dict] = field(default_factory=list)
    ignore_regions: list[list] = field(default_factory=list)
    others: list[dict] = field(default_factory=list)
    clipped: int = 0
    dropped: int = 0


def clip_xywh(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip x, y, w, h boxes (N, 4) to a width x height image; may give w or h 0."""
    box = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    x1 = np.clip(box[:, 0], 0, width)
    y1 = np.clip(box[:, 1], 0, height)
    x2 = np.clip(box[:, 0] + box[:, 2], 0, width)
    y2 = np.clip(box[:, 1] + box[:, 3], 0, height)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def visdrone_rows_to_labels(rows: np.ndarray, width: int, height: int) -> ImageLabels:
    """Split one image's VisDrone rows (N, 8) into annotations, ignore regions and others.

    Rows must have been checked (`check_gt_rows`). Annotations come out in file
    order, without ``id``/``image_id``.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    out = ImageLabels()
    cats = rows[:, 5].astype(np.int64)
    for row in rows[cats == IGNORED_REGION]:
        out.ignore_regions.append([_num(v) for v in row[:4]])
    for row in rows[cats == OTHERS]:
        out.others.append({"bbox": [_num(v) for v in row[:4]], "score": _num(row[4]),
                           "truncation": int(row[6]), "occlusion": int(row[7])})
    objects = rows[(cats != IGNORED_REGION) & (cats != OTHERS)]
    clipped = clip_xywh(objects[:, :4], width, height)
    for row, box in zip(objects, clipped):
        if box[2] <= 0 or box[3] <= 0:
            out.dropped += 1
            continue
        ann = {"category_id": int(row[5]), "bbox": [_num(v) for v in box], "area": _num(box[2] * box[3]),
               "iscrowd": int(row[4] == 0), "truncation": int(row[6]), "occlusion": int(row[7])}
        if not np.array_equal(box, row[:4]):
            ann["visdrone_bbox"] = [_num(v) for v in row[:4]]
            out.clipped += 1
        out.annotations.append(ann)
    return out


def check_gt_rows(rows: np.ndarray) -> int | None:
    """Index of the first row that is not valid ground truth, or None.

    Ground truth has category 0..11 and score 0 or 1 (integers).
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    bad = ((rows[:, 5] < 0) | (rows[:, 5] > OTHERS) | (rows[:, 5] != np.round(rows[:, 5]))
           | ((rows[:, 4] != 0) & (rows[:, 4] != 1)))
    index = np.flatnonzero(bad)
    return int(index[0]) if len(index) else None


def build_coco(images: list[dict], labels: list[ImageLabels], classes=None) -> dict:
    """Assemble the json: ``images`` records (file_name, width, height) in id order,
    with their labels; ids are 1..N for images, 1..M for annotations, in order;
    categories 1..K named by ``classes`` (VisDrone's by default)."""
    coco = {"images": [], "annotations": [], "categories": coco_categories(classes), "others": []}
    for image_id, (image, lab) in enumerate(zip(images, labels), start=1):
        coco["images"].append({"id": image_id, **image, "ignore_regions": lab.ignore_regions})
        for ann in lab.annotations:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, **ann})
        for other in lab.others:
            coco["others"].append({"id": len(coco["others"]) + 1, "image_id": image_id, **other})
    return coco


def coco_to_visdrone_rows(coco: dict) -> dict[str, np.ndarray]:
    """Rebuild each image's VisDrone ground-truth rows from our COCO json (checked by
    :func:`afmcli.data.coco_check.check_coco_gt`).

    Returns {image key: (N, 8) float64} (see :func:`afmcli.data.images.image_key`):
    annotations in id order (unclipped boxes), then category-11 rows, then ignored
    regions (score, truncation, occlusion 0). Boxes dropped at conversion (empty
    once clipped) are not there.
    """
    per_image: dict[int, list] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        box = ann.get("visdrone_bbox", ann["bbox"])
        per_image[ann["image_id"]].append([*box, 0 if ann.get("iscrowd") else 1, ann["category_id"],
                                           ann.get("truncation", 0), ann.get("occlusion", 0)])
    for other in coco.get("others", []):
        per_image[other["image_id"]].append([*other["bbox"], other.get("score", 1), OTHERS,
                                             other.get("truncation", 0), other.get("occlusion", 0)])
    out = {}
    for img in coco["images"]:
        rows = per_image[img["id"]] + [[*r, 0, IGNORED_REGION, 0, 0] for r in img.get("ignore_regions", [])]
        out[image_key(img["file_name"])] = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    return out


def images_over_cap(results: Results, max_per_image: int) -> int:
    """How many images have more than ``max_per_image`` detections (the cap cuts them)."""
    _, counts = np.unique(results.image_ids, return_counts=True)
    return int((counts > max_per_image).sum())


def coco_results_to_visdrone(results: Results | list, images: list[dict], source="results",
                             max_per_image: int = MAX_DETS_PER_IMAGE) -> dict[str, np.ndarray]:
    """COCO detection results (a list, or checked :class:`Results`) -> VisDrone result
    rows per image.

    ``images``: the gt json's image records (every one gets an entry, maybe empty).
    Rows are sorted by score, descending and stable, cut at ``max_per_image``
    (the toolkit reads the first 500 lines in file order), with -1 in the last
    two columns. Returns {image key: (N, 8) float64}.
    """
    if not isinstance(results, Results):
        results = check_coco_results(results, source)
    keys = {img["id"]: image_key(img["file_name"]) for img in images}
    unknown = ~np.isin(results.image_ids, list(keys))
    if unknown.any():
        k = int(np.flatnonzero(unknown)[0])
        raise AfmError(f"{source}: results[{k}]: image_id {results.image_ids[k]} is not in the "
                       f"ground-truth json ({int(unknown.sum())} results with unknown image ids)")
    arr = np.c_[results.boxes, results.scores, results.category_ids, -np.ones((len(results), 2))]
    order = np.argsort(results.image_ids, kind="stable")
    ids, starts = np.unique(results.image_ids[order], return_index=True)
    groups = dict(zip(ids.tolist(), np.split(order, starts[1:]) if len(order) else []))
    out = {}
    for image_id, key in keys.items():
        rows = arr[groups.get(image_id, np.zeros(0, dtype=np.int64))]
        out[key] = rows[np.argsort(-rows[:, 4], kind="stable")[:max_per_image]]
    return out


def write_visdrone_folder(rows_by_key: dict[str, np.ndarray], out_dir: str | Path) -> None:
    """Write {image key: rows} as a VisDrone folder (<key>.txt each, empty files too), atomically."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for key, rows in rows_by_key.items():
            path = tmp / f"{key}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(format_visdrone_lines(rows))
