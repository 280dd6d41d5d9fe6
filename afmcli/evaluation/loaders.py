"""Inputs of `afm evaluate` -> `ImageRows`, exactly the rows the toolkit would see.

Ground truth: a VisDrone annotations folder (image sizes from the image headers)
or our COCO json (sizes, ignore regions, unclipped boxes and category-11 rows
inside; see afmcli/data/coco.py), or a dataset's split (afmcli.data.datasets.split_json:
any format afm reads, converted into afm's cache). Predictions: a VisDrone results folder
(<name>.txt, file order kept) or a COCO results json (sorted per image by score,
stable, cut at 500, as our writer does). Images are named by their relative path
without suffix (afmcli.data.images.image_key; the stem for flat folders) and
come in sorted name order, the order of the toolkit's `dir` listing of the
annotation folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afmcli.data.coco import (MAX_DETS_PER_IMAGE, check_gt_rows, coco_results_to_visdrone,
                              coco_to_visdrone_rows, images_over_cap)
from afmcli.data.coco_check import Results, check_coco_results, load_coco_gt, load_coco_results
from afmcli.data.datasets import is_dataset, split_json
from afmcli.data.images import check_unique_keys, image_key, image_size, list_images
from afmcli.data.layout import DatasetPaths
from afmcli.data.visdrone_format import IGNORED_REGION, read_visdrone_file
from afmcli.errors import AfmError, ParameterError, warn
from afmcli.evaluation.categories import (VISDRONE_TABLE, CategoryTable, check_prediction_table,
                                         read_prediction_table, table_of)
from afmcli.evaluation.image_ids import gt_image_ids, read_prediction_images, renumbered
from afmcli.evaluation.meaning import (box_form_warning, category_warning, coverage_message,
                                      is_visdrone_table)
from afmcli.evaluation.visdrone import ImageRows


@dataclass
class GroundTruth:
    """Images in evaluation order: name (image key), height, width, raw gt rows (N, 8).

    ``coco_images`` are the json's image records (for COCO results), else None. ``table``:
    the category table; rows number its categories 1..K (afmcli.evaluation.categories).
    ``images``: the image folder of a dataset's split (for drawing), else None.
    """

    names: list[str]
    heights: list[int]
    widths: list[int]
    rows: list[np.ndarray]
    coco_images: list[dict] | None = None
    table: CategoryTable = VISDRONE_TABLE
    source: str = "the ground truth"  # its path, for messages
    images: Path | None = None


def _bad_gt_row(rows: np.ndarray) -> tuple[int, str] | None:
    """First row the toolkit cannot evaluate as ground truth, with the reason."""
    index = check_gt_rows(rows)
    if index is not None:
        return index, "ground truth needs score 0 or 1 and an integer category 0..11"
    regions = (rows[:, 5] == IGNORED_REGION) & (rows[:, :4] != np.round(rows[:, :4])).any(axis=1)
    if regions.any():
        return int(np.flatnonzero(regions)[0]), "ignored region (category 0) with non-integer x, y, w, h"
    return None


def _line_of_row(path: Path, index: int) -> int:
    """File line of parsed row ``index`` (the parser skips blank lines)."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [n for n, line in enumerate(lines, start=1) if line.strip()][index]


def _image_sizes(images_dir: Path, names: list[str]) -> tuple[list[int], list[int]]:
    """(heights, widths) from the image headers (no decoding; damaged files refused)."""
    if not images_dir.is_dir():
        raise AfmError(f"{images_dir}: no such images folder")
    files = list_images(images_dir)
    check_unique_keys([p.name for p in files], images_dir)
    by_key = {image_key(p.name): p for p in files}
    heights, widths = [], []
    for name in names:
        if name not in by_key:
            raise AfmError(f"{images_dir}: no image for annotation {name}.txt")
        width, height = image_size(by_key[name], complete=False)  # the pixels are never used here
        heights.append(height)
        widths.append(width)
    return heights, widths


def load_txt_ground_truth(gt_dir: Path, images_dir: Path | None) -> GroundTruth:
    paths = sorted(gt_dir.glob("*.txt"))
    if not paths:
        raise AfmError(f"{gt_dir}: no annotation files (*.txt)")
    if images_dir is None:
        raise ParameterError(f"{gt_dir}: a VisDrone annotations folder needs {{images_dir}} for the image sizes",
                             "images_dir")
    rows = []
    for path in paths:
        r = read_visdrone_file(path)
        bad = _bad_gt_row(r)
        if bad is not None:
            raise AfmError(f"{path}:{_line_of_row(path, bad[0])}: {bad[1]}")
        rows.append(r)
    names = [p.stem for p in paths]
    heights, widths = _image_sizes(images_dir, names)
    return GroundTruth(names, heights, widths, rows, source=str(gt_dir))


def _indexed(coco: dict, table: CategoryTable, source) -> dict:
    """A json of any category table with its categories numbered 1..K (the rows' numbering),
    ``iscrowd`` and an ``ignore`` flag both as crowd (ignored in matching); no 'others'."""
    index = dict(zip(table.ids, range(1, len(table.ids) + 1)))
    annotations = []
    for ann in coco["annotations"]:
        if ann["category_id"] not in index:
            raise AfmError(f"{source}: annotation {ann.get('id')}: category_id {ann['category_id']} is not "
                           f"in the category table ({table.describe()})")
        annotations.append({**ann, "category_id": index[ann["category_id"]],
                            "iscrowd": int(bool(ann.get("iscrowd") or ann.get("ignore")))})
    return {**coco, "annotations": annotations, "others": []}


def load_coco_ground_truth(gt_json: Path) -> GroundTruth:
    """A COCO json (checked: structure, category table). VisDrone's table keeps its ids and
    the toolkit's rows; any other table is numbered 1..K (:func:`_indexed`)."""
    coco = load_coco_gt(gt_json)
    categories = coco.get("categories", [])
    table = VISDRONE_TABLE if is_visdrone_table(categories) else table_of(categories, gt_json)
    if not table.visdrone:
        coco = _indexed(coco, table, gt_json)
    try:
        by_key = coco_to_visdrone_rows(coco)
    except (KeyError, TypeError, ValueError) as exc:
        raise AfmError(f"{gt_json}: malformed 'others' or 'ignore_regions' record ({exc})") from None
    records = {image_key(img["file_name"]): img for img in coco["images"]}
    names = sorted(by_key)
    for name in names if table.visdrone else ():  # the toolkit's rules, for the toolkit's table
        bad = _bad_gt_row(by_key[name])
        if bad is not None:
            raise AfmError(f"{gt_json}: image {records[name]['file_name']}: {bad[1]}: "
                           f"{by_key[name][bad[0]].tolist()}")
    return GroundTruth(names, [records[n]["height"] for n in names], [records[n]["width"] for n in names],
                       [by_key[n] for n in names], coco_images=coco["images"], table=table,
                       source=str(gt_json))


def load_ground_truth(gt: Path, images_dir: Path | None = None, split: str = "val") -> GroundTruth:
    """``gt``: a COCO json, a VisDrone annotations folder (sizes from ``images_dir``), or a
    dataset (afmcli.data.datasets.is_dataset), of which ``split`` is scored."""
    gt = Path(gt)
    if is_dataset(gt):
        ann, images = split_json(gt, split)
        truth = load_coco_ground_truth(ann)
        truth.source, truth.images = f"{ann} (the {split} split of {gt})", images
        return truth
    if gt.is_dir():
        return load_txt_ground_truth(gt, images_dir)
    if gt.is_file():
        return load_coco_ground_truth(gt)
    raise AfmError(f"{gt}: no such annotations folder or json")


def load_predictions(pred, gt: GroundTruth, pred_table: CategoryTable | None = None) -> list[np.ndarray]:
    """Result rows per gt image (in gt order) from ``pred``: a VisDrone results folder, a
    COCO results json, or COCO results in memory (a list of dicts), their category ids
    renumbered as the ground truth's rows (-1: not in its table, not scored). The table the
    detections use (``pred_table``, or the categories.json `afm infer` wrote beside them) must
    agree with the ground truth's by name; the file names `afm infer` recorded for its image ids
    (images.json beside a results json) must be the ground truth's (ids naming other files are
    matched by file name, with a warning: afmcli.evaluation.image_ids). Warns (AfmWarning)
    about missing results, odd category ids and xyxy-looking boxes; no results for any image
    is an error."""
    in_memory = isinstance(pred, list)
    recorded = pred_table or read_prediction_table(pred)
    if recorded is not None:
        check_prediction_table(recorded, gt.table, "predictions" if in_memory else pred, gt.source)
    if not in_memory and Path(pred).is_dir():
        rows = _folder_rows(Path(pred), gt)
    else:
        if not in_memory and not Path(pred).is_file():
            raise AfmError(f"{pred}: no such results folder or json")
        source = "predictions" if in_memory else pred
        if gt.coco_images is None:
            raise ParameterError(f"{source}: COCO results name images by id: give the COCO json as {{gt}}", "gt")
        results = check_coco_results(pred, source) if in_memory else load_coco_results(pred)
        images = read_prediction_images(pred)  # (its path, id -> file_name), or None
        mapping = images and gt_image_ids(images[1], gt.coco_images, images[0], gt.source)
        rows = _results_rows(renumbered(results, mapping, images[0]) if mapping else results, gt, source)
    dets = [r for r in rows if len(r)]
    if dets:
        for message in (category_warning(np.concatenate(dets)[:, 5], pred, gt.table),
                        box_form_warning([r[:, :4] for r in rows], list(zip(gt.widths, gt.heights)), pred)):
            if message:
                warn(message)
    if not gt.table.visdrone:
        rows = [np.c_[r[:, :5], gt.table.indices(r[:, 5]), r[:, 6:]] for r in rows]
    return rows


def _folder_rows(pred: Path, gt: GroundTruth) -> list[np.ndarray]:
    rows, missing = [], []
    for name in gt.names:
        path = pred / f"{name}.txt"
        if path.is_file():
            rows.append(read_visdrone_file(path))
        else:
            missing.append(f"{name}.txt")
            rows.append(np.zeros((0, 8)))
    if len(missing) == len(gt.names):
        hint = (f"; the VisDrone files of `afm infer` are in {pred / 'visdrone'}"
                if (pred / "visdrone").is_dir() else "")
        raise AfmError(f"{pred}: no result file for any of the {len(gt.names)} images "
                       f"(expected {missing[0]}, ...){hint}")
    if missing:
        warn(coverage_message(missing, len(gt.names), f"result files missing in {pred} (no detections)"))
    cut = sum(len(r) > MAX_DETS_PER_IMAGE for r in rows)
    if cut:
        warn(f"{pred}: {cut} result files have more than {MAX_DETS_PER_IMAGE} lines; only the "
             f"first {MAX_DETS_PER_IMAGE} of each are scored (the toolkit's limit)")
    return rows


def _results_rows(results: Results, gt: GroundTruth, source) -> list[np.ndarray]:
    by_key = coco_results_to_visdrone(results, gt.coco_images, source)
    covered = set(results.image_ids.tolist())
    if not covered:
        raise AfmError(f"{source}: no detections for any of the {len(gt.names)} images")
    without = [img["file_name"] for img in gt.coco_images if img["id"] not in covered]
    if without:
        warn(coverage_message(without, len(gt.names), f"images have no detections in {source}"))
    cut = images_over_cap(results, MAX_DETS_PER_IMAGE)
    if cut:
        warn(f"{source}: {cut} images have more than {MAX_DETS_PER_IMAGE} detections; only "
             f"the best {MAX_DETS_PER_IMAGE} of each are scored (the toolkit's limit)")
    return [by_key[name] for name in gt.names]


def load_images(gt_path: Path, pred, images_dir: Path | None = None) -> list[ImageRows]:
    """Everything the evaluation needs (``pred`` as :func:`load_predictions` takes it)."""
    gt = load_ground_truth(Path(gt_path), images_dir)
    return image_rows(gt, load_predictions(pred, gt))


def image_rows(gt: GroundTruth, dets: list[np.ndarray]) -> list[ImageRows]:
    """Each ground-truth image with its detection rows (in gt order)."""
    return [ImageRows(n, h, w, r, d) for n, h, w, r, d in zip(gt.names, gt.heights, gt.widths, gt.rows, dets)]


def image_files(gt: GroundTruth, gt_path: Path, images_dir: Path | None) -> dict[str, Path]:
    """The image file of each evaluated image (by name, the image key), for drawing: in
    ``images_dir`` for a txt ground truth; for our COCO json (its records already loaded in ``gt``),
    its ``file_name`` under ``images_dir`` or the split's images folder
    (Datasets/images/<split>/)."""
    if gt.coco_images is None:
        if images_dir is None:
            raise ParameterError(f"{gt_path}: a VisDrone annotations folder needs {{images_dir}} to draw the images",
                                 "images_dir")
        files = {image_key(p.name): p for p in list_images(images_dir)}
    else:
        root = images_dir or gt.images or DatasetPaths.from_ann_file(gt_path).images
        files = {image_key(img["file_name"]): root / img["file_name"] for img in gt.coco_images}
    for name in gt.names:
        if name not in files or not files[name].is_file():
            raise ParameterError(f"{files.get(name, images_dir)}: no image file for {name} (pass {{images_dir}} DIR)",
                                 "images_dir")
    return {name: files[name] for name in gt.names}
