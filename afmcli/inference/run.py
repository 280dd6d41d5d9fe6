"""`afm infer` end to end: images -> tiles + full pass -> fusion -> result files.

Output folder (written at a temporary path, renamed into place when done):
    sources/slices.json   raw tile detections, image coordinates (COCO results)
    sources/full.json     raw full-image detections (COCO results)
    predictions.json      the fused result (COCO results)
    visdrone/<stem>.txt   the fused result in VisDrone's format, one file per image
    viz/<stem>.png        with --viz: fused boxes drawn on the image, with a legend (.jpg above 0.5 MP)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from afmcli.errors import AfmError
from afmcli.inference.detections import Detections, detections_to_visdrone_rows, write_results_json
from afmcli.inference.fusion import check_fusion_options, fuse_predictions
from afmcli.inference.predictor import Predictor, load_detector, predict_image
from afmcli.inference.sources import category_ids, resolve_source
from afmcli.io import atomic_path


@dataclass
class InferSettings:
    slice_size: int = 640
    overlap: float = 0.25
    batch_size: int = 8
    slices: bool = True
    full: bool = True
    score_thr: float = 0.01
    method: str = "nms"
    iou: float = 0.6
    match: str = "iou"
    max_per_img: int = 500
    viz: bool = False
    viz_score: float = 0.3


@dataclass
class InferStats:
    images: int = 0
    tiles: int = 0
    slice_dets: int = 0
    full_dets: int = 0
    fused_dets: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)


def check_settings(s: InferSettings) -> None:
    if not (s.slices or s.full):
        raise AfmError("--no-slices and --no-full-image together leave nothing to run")
    if s.slice_size < 1 or s.batch_size < 1:
        raise AfmError(f"--slice and --batch-size must be >= 1, got {s.slice_size} and {s.batch_size}")
    check_fusion_options(s.method, s.iou, s.match, False, None, 2)


def check_out_dir(out: Path) -> None:
    """The output folder is replaced as a whole: refuse to replace anything but our own."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "predictions.json").is_file())):
        raise AfmError(f"{out}: exists and is not an `afm infer` output folder; choose another --out")


def read_image(path: Path) -> np.ndarray | None:
    """BGR uint8 as mmcv's LoadImageFromFile gives it, or None when unreadable."""
    return cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None


def run_inference(config: Path, checkpoint: Path, source: Path, out: Path, settings: InferSettings,
                  device: str = "cpu", images_dir: Path | None = None, trust: bool = False) -> InferStats:
    """Run and write everything; unreadable images are skipped and listed in the stats."""
    from afmcli.data.coco import write_visdrone_folder
    from afmcli.progress import make_progress
    from afmcli.viz.draw import draw_detections, write_image

    check_settings(settings)
    check_out_dir(out)
    items, categories = resolve_source(source, images_dir)
    model, cfg, classes = load_detector(config, checkpoint, device, trust)
    to_category = category_ids(classes, categories, source)
    names = dict(zip(to_category, classes))
    predictor = Predictor(model, cfg, settings.score_thr)

    stats = InferStats()
    # Arrays per image (not result dicts): a whole split stays small in memory.
    slices_by_id: dict[int, Detections] = {}
    full_by_id: dict[int, Detections] = {}
    fused_by_id: dict[int, Detections] = {}
    visdrone_rows = {}
    start = time.perf_counter()
    with atomic_path(out) as tmp, make_progress() as progress:
        tmp.mkdir()
        if settings.viz:
            (tmp / "viz").mkdir()
        image_task = progress.add_task("images", total=len(items))
        tile_task = progress.add_task("tiles", total=None)
        for item in items:
            image = read_image(item.path)
            progress.advance(image_task)
            if image is None:
                stats.failed.append(str(item.path))
                continue
            slices, full, n_tiles = predict_image(
                predictor, image, settings.slice_size, settings.overlap, settings.batch_size,
                settings.slices, settings.full, on_batch=lambda n: progress.advance(tile_task, n))
            slices_by_id[item.image_id] = slices.relabel(to_category)
            full_by_id[item.image_id] = full.relabel(to_category)
            fused = fuse_predictions([{item.image_id: slices_by_id[item.image_id]},
                                      {item.image_id: full_by_id[item.image_id]}],
                                     settings.method, settings.iou, settings.match,
                                     max_per_img=settings.max_per_img,
                                     image_sizes={item.image_id: image.shape[1::-1]})[item.image_id]
            fused_by_id[item.image_id] = fused
            visdrone_rows[Path(item.file_name).stem] = detections_to_visdrone_rows(fused, settings.max_per_img)
            stats.images += 1
            stats.tiles += n_tiles
            stats.slice_dets += len(slices)
            stats.full_dets += len(full)
            stats.fused_dets += len(fused)
            if settings.viz:
                write_image(tmp / "viz" / Path(item.file_name).stem,
                            draw_detections(image, fused, names, settings.viz_score))
        if settings.slices:
            write_results_json(tmp / "sources" / "slices.json", slices_by_id)
        if settings.full:
            write_results_json(tmp / "sources" / "full.json", full_by_id)
        write_results_json(tmp / "predictions.json", fused_by_id)
        write_visdrone_folder(visdrone_rows, tmp / "visdrone")
    stats.seconds = time.perf_counter() - start
    return stats
