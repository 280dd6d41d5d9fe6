"""Inputs of `afm evaluate` -> `ImageRows`, exactly the rows the toolkit would see.

Ground truth: a VisDrone annotations folder (image sizes from the image headers)
or our COCO json (sizes, ignore regions, unclipped boxes and category-11 rows
inside; see afmcli/data/coco.py). Predictions: a VisDrone results folder
(<stem>.txt, file order kept) or a COCO results json (sorted per image by score,
stable, cut at 500, as our writer does). Images are in sorted stem order, the
order of the toolkit's `dir` listing of the annotation folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imagesize
import numpy as np

from afmcli.data.coco import check_gt_rows, coco_results_to_visdrone, coco_to_visdrone_rows
from afmcli.data.visdrone_format import IGNORED_REGION, read_visdrone_file
from afmcli.errors import AfmError
from afmcli.evaluation.visdrone import ImageRows
from afmcli.io import read_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class GroundTruth:
    """Images in evaluation order: stem, height, width, raw gt rows (N, 8).

    ``coco_images`` are the json's image records (for COCO results), else None.
    """

    names: list[str]
    heights: list[int]
    widths: list[int]
    rows: list[np.ndarray]
    coco_images: list[dict] | None = None


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


def _images_by_stem(images_dir: Path) -> dict[str, Path]:
    if not images_dir.is_dir():
        raise AfmError(f"{images_dir}: no such images folder")
    return {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _image_sizes(images_dir: Path, stems: list[str]) -> tuple[list[int], list[int]]:
    """(heights, widths) from the image headers (no decoding)."""
    by_stem = _images_by_stem(images_dir)
    heights, widths = [], []
    for stem in stems:
        if stem not in by_stem:
            raise AfmError(f"{images_dir}: no image for annotation {stem}.txt")
        width, height = imagesize.get(by_stem[stem])
        if width <= 0 or height <= 0:
            raise AfmError(f"{by_stem[stem]}: cannot read the image size from its header")
        heights.append(int(height))
        widths.append(int(width))
    return heights, widths


def load_txt_ground_truth(gt_dir: Path, images_dir: Path | None) -> GroundTruth:
    paths = sorted(gt_dir.glob("*.txt"))
    if not paths:
        raise AfmError(f"{gt_dir}: no annotation files (*.txt)")
    if images_dir is None:
        raise AfmError(f"{gt_dir}: a VisDrone annotations folder needs --images for the image sizes")
    rows = []
    for path in paths:
        r = read_visdrone_file(path)
        bad = _bad_gt_row(r)
        if bad is not None:
            raise AfmError(f"{path}:{_line_of_row(path, bad[0])}: {bad[1]}")
        rows.append(r)
    names = [p.stem for p in paths]
    heights, widths = _image_sizes(images_dir, names)
    return GroundTruth(names, heights, widths, rows)


def load_coco_ground_truth(gt_json: Path) -> GroundTruth:
    coco = read_json(gt_json)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or "annotations" not in coco:
        raise AfmError(f"{gt_json}: not a COCO ground-truth json (needs 'images' and 'annotations')")
    try:
        by_stem = coco_to_visdrone_rows(coco)
        records = {Path(img["file_name"]).stem: img for img in coco["images"]}
        sizes = {stem: (int(img["height"]), int(img["width"])) for stem, img in records.items()}
    except KeyError as exc:
        raise AfmError(f"{gt_json}: missing key or unknown image id {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise AfmError(f"{gt_json}: malformed record ({exc})") from None
    names = sorted(by_stem)
    for name in names:
        bad = _bad_gt_row(by_stem[name])
        if bad is not None:
            raise AfmError(f"{gt_json}: image {records[name]['file_name']}: {bad[1]}: "
                           f"{by_stem[name][bad[0]].tolist()}")
    return GroundTruth(names, [sizes[n][0] for n in names], [sizes[n][1] for n in names],
                       [by_stem[n] for n in names], coco_images=coco["images"])


def load_ground_truth(gt: Path, images_dir: Path | None = None) -> GroundTruth:
    if gt.is_dir():
        return load_txt_ground_truth(gt, images_dir)
    if gt.is_file():
        return load_coco_ground_truth(gt)
    raise AfmError(f"{gt}: no such annotations folder or json")


def load_predictions(pred: Path, gt: GroundTruth) -> tuple[list[np.ndarray], list[str]]:
    """Result rows per gt image (in gt order), and the result files that were missing."""
    if pred.is_dir():
        rows, missing = [], []
        for name in gt.names:
            path = pred / f"{name}.txt"
            if path.is_file():
                rows.append(read_visdrone_file(path))
            else:
                missing.append(path.name)
                rows.append(np.zeros((0, 8)))
        return rows, missing
    if not pred.is_file():
        raise AfmError(f"{pred}: no such results folder or json")
    if gt.coco_images is None:
        raise AfmError(f"{pred}: COCO results name images by id: give the COCO json as --gt")
    results = read_json(pred)
    if not isinstance(results, list):
        raise AfmError(f"{pred}: not a COCO results json (a list of detections)")
    try:
        by_stem = coco_results_to_visdrone(results, gt.coco_images)
    except AfmError as exc:
        raise AfmError(f"{pred}: {exc}") from None
    return [by_stem[name] for name in gt.names], []


def load_images(gt_path: Path, pred_path: Path, images_dir: Path | None = None
                ) -> tuple[list[ImageRows], list[str]]:
    """Everything the evaluation needs, and the names of missing result files."""
    gt = load_ground_truth(gt_path, images_dir)
    dets, missing = load_predictions(pred_path, gt)
    images = [ImageRows(n, h, w, r, d) for n, h, w, r, d in zip(gt.names, gt.heights, gt.widths, gt.rows, dets)]
    return images, missing


def image_files(gt_path: Path, images_dir: Path | None, names: list[str]) -> dict[str, Path]:
    """The image file of each evaluated image (by name), for drawing: by stem in
    ``images_dir`` for a txt --gt; for our COCO json, its ``file_name`` under
    ``images_dir`` or the split's images folder (Datasets/images/<split>/)."""
    from afmcli.inference.sources import json_images_dir

    if gt_path.is_dir():
        if images_dir is None:
            raise AfmError(f"{gt_path}: a VisDrone annotations folder needs --images to draw the images")
        files = _images_by_stem(images_dir)
    else:
        root = images_dir or json_images_dir(gt_path)
        files = {Path(img["file_name"]).stem: root / img["file_name"] for img in read_json(gt_path)["images"]}
    for name in names:
        if name not in files or not files[name].is_file():
            where = files.get(name, images_dir)
            raise AfmError(f"{where}: no image file for {name} (pass --images DIR)")
    return {name: files[name] for name in names}
