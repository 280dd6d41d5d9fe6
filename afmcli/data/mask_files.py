"""Mask ground-truth files for a split: labels/gt_mask_{s,l}/<split>/<image key>.png, the
key being the image's path relative to the split's image folder without its suffix
(:func:`afmcli.data.images.image_key`): seq0/frame1.jpg and seq4/frame1.jpg get two files.

0/255 uint8 PNGs at image resolution, rendered by `render_object_masks` (stride 1)
from the split's COCO json. Crowd (score-0) boxes are not drawn: the detector is
not trained on them either, and a mask that marks them would reward the mask
branch for attending to what the head must ignore.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from afmcli.data.coco_check import load_coco_gt
from afmcli.data.layout import DatasetPaths
from afmcli.data.images import check_unique_keys, image_key, save_image
from afmcli.data.masks import render_object_masks, shape_radius
from afmcli.io import atomic_path, check_replaceable
from afmcli.parallel import worker_pool
from afmcli.progress import track

# Masks are mostly zeros: light compression is almost as small and much faster.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def boxes_by_image(coco: dict) -> dict[int, np.ndarray]:
    """Non-crowd boxes per image id as (N, 4) xyxy float64 (clipped boxes, as trained on)."""
    per_image: dict[int, list] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            per_image[ann["image_id"]].append(ann["bbox"])
    out = {}
    for image_id, boxes in per_image.items():
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out[image_id] = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    return out


def _write_masks(job: tuple) -> None:
    key, height, width, boxes, dirs, kind, small_area, threshold = job
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    masks = render_object_masks(boxes, areas, (height, width), 1, kind, small_area, threshold)
    for folder, mask in zip(dirs, masks):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        save_image(folder / f"{key}.png", mask * np.uint8(255), PNG_PARAMS)


def write_mask_files(root: Path, split: str, kind: str = "oval", small_area: float = 1024,
                     threshold: float = 0.1, workers: int = 0) -> dict:
    """Render and write both mask folders of a split atomically; returns counts."""
    shape_radius(kind, threshold)  # checks kind and threshold before any work
    paths = DatasetPaths(Path(root), split)
    for size in ("s", "l"):
        check_replaceable(paths.mask_dir(size), f"labels/gt_mask_{size}/{split}")
    coco = load_coco_gt(paths.ann_file)
    check_unique_keys((img["file_name"] for img in coco["images"]), paths.ann_file)
    boxes = boxes_by_image(coco)
    small = sum(int(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) < small_area).sum()) for b in boxes.values())
    total = sum(len(b) for b in boxes.values())
    with atomic_path(paths.mask_dir("s")) as dir_s, atomic_path(paths.mask_dir("l")) as dir_l:
        dir_s.mkdir()
        dir_l.mkdir()
        jobs = [(image_key(img["file_name"]), int(img["height"]), int(img["width"]), boxes[img["id"]],
                 (dir_s, dir_l), kind, small_area, threshold) for img in coco["images"]]
        with worker_pool(workers) as pool:
            for _ in track(pool.imap_unordered(_write_masks, jobs, chunksize=8), "Rendering masks",
                           total=len(jobs)):
                pass
    return {"images": len(jobs), "boxes": total, "small": small, "large": total - small,
            "crowd_skipped": sum(a.get("iscrowd", 0) for a in coco["annotations"])}
