"""`afm fuse` on files: read and check COCO result files, fuse, write."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from afmcli.errors import AfmError
from afmcli.inference.detections import (Detections, detections_to_visdrone_rows, results_to_detections,
                                         write_results_json)
from afmcli.inference.fusion import check_fusion_options, fuse_predictions
from afmcli.io import read_json


def read_gt_images(gt: Path) -> list[dict]:
    coco = read_json(gt)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise AfmError(f"{gt}: not a COCO json (no 'images' list)")
    return coco["images"]


def check_image_ids(sources: Sequence[dict[int, Detections]], names: Sequence[Path], gt: Path,
                    known: set[int]) -> None:
    for name, source in zip(names, sources):
        unknown = sorted(set(source) - known)
        if unknown:
            raise AfmError(f"{name}: {len(unknown)} image id(s) not in {gt}, e.g. image_id {unknown[0]}")


def fuse_files(preds: Sequence[Path], out: Path, method: str = "nms", iou: float = 0.6, match: str = "iou",
               class_agnostic: bool = False, weights: Sequence[float] | None = None,
               max_per_img: int = 500, visdrone_dir: Path | None = None,
               gt: Path | None = None) -> list[tuple[str, int, int]]:
    """Fuse the files and write ``out`` (and ``visdrone_dir``); returns (name, images,
    detections) per input and for the result."""
    from afmcli.data.coco import write_visdrone_folder

    check_fusion_options(method, iou, match, class_agnostic, weights, len(preds))
    if visdrone_dir is not None and gt is None:
        raise AfmError("--visdrone-dir needs --gt: the VisDrone files are named after its images")
    sources = [results_to_detections(read_json(p), str(p)) for p in preds]
    images, sizes = None, None
    if gt is not None:
        images = read_gt_images(gt)
        check_image_ids(sources, preds, gt, {img.get("id") for img in images})
        sizes = {img["id"]: (img["width"], img["height"]) for img in images if "width" in img and "height" in img}
    fused = fuse_predictions(sources, method, iou, match, class_agnostic, weights, max_per_img, sizes)
    write_results_json(out, fused)
    if visdrone_dir is not None:
        # Every image of the gt json gets a file, an empty one where nothing was fused.
        write_visdrone_folder({Path(img["file_name"]).stem: detections_to_visdrone_rows(
            fused.get(img["id"], Detections.empty()), max_per_img) for img in images}, visdrone_dir)
    summary = [(str(p), len(s), sum(len(d) for d in s.values())) for p, s in zip(preds, sources)]
    return summary + [(f"fused -> {out}", len(fused), sum(len(d) for d in fused.values()))]
