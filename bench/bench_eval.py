"""Speed of the VisDrone view at val scale, beside pycocotools and faster-coco-eval.

    taskset -c 0 .venv/bin/python bench/bench_eval.py [--images 548] [--seed 0]

Generates (seeded) val-scale data: 548 images of VisDrone sizes, ~70 small gt
boxes each (class mix of VisDrone val, ignored regions, score-0 boxes, others),
500 detections per image written sorted by score as our writer does. Times
ours end to end (reading the txt folders and image headers, evaluating), then
the same data after ignore filtering, as COCO, through pycocotools' COCOeval and
faster-coco-eval (evaluate + accumulate, maxDets 1/10/100/500), in one run.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.evaluation.coco_view import coco_view_datasets, configure
from afmcli.evaluation.loaders import load_images
from afmcli.evaluation.visdrone import ImageRows, evaluate_visdrone

SIZES = [(1360, 765), (1360, 765), (1360, 765), (960, 540), (1920, 1080), (2000, 1500)]
CLASS_MIX = np.array([0.22, 0.08, 0.03, 0.37, 0.06, 0.02, 0.03, 0.02, 0.01, 0.16])
CLASS_SIZE = np.array([[10, 24], [9, 20], [14, 18], [34, 24], [40, 30], [60, 45], [25, 22],
                       [25, 22], [90, 60], [14, 18]], dtype=np.float64)


def make_image(rng: np.random.Generator, name: str, max_dets: int = 500) -> ImageRows:
    width, height = SIZES[rng.integers(len(SIZES))]
    n = int(rng.poisson(70))
    cls = rng.choice(10, size=n, p=CLASS_MIX / CLASS_MIX.sum()) + 1
    wh = np.round(CLASS_SIZE[cls - 1] * rng.lognormal(0, 0.35, (n, 2)))
    xy = np.round(rng.uniform(0, 1, (n, 2)) * ([width, height] - wh * 0.8))
    score = (rng.random(n) > 0.04).astype(np.float64)
    gt = np.c_[xy, wh, score, cls, rng.integers(0, 2, n), rng.integers(0, 3, n)]
    k = int(rng.integers(0, 4))
    regions = np.c_[rng.integers(1, width - 100, k), rng.integers(1, height - 80, k),
                    rng.integers(30, 200, k), rng.integers(20, 150, k), np.zeros((k, 4))]
    others = np.c_[rng.uniform(0, width - 30, 1), rng.uniform(0, height - 30, 1), [[20, 20, 1, 11, 0, 0]]]
    gt = np.round(np.r_[gt, others, regions])
    # Detections: a few jittered boxes per object, then background boxes, best first.
    found = gt[(gt[:, 5] >= 1) & (gt[:, 5] <= 10)]
    repeat = rng.integers(0, 5, len(found))
    near = np.repeat(found, repeat, axis=0)
    jitter = rng.normal(0, 0.07, (len(near), 4)) * near[:, [2, 3, 2, 3]]
    boxes = np.c_[near[:, :2] + jitter[:, :2], np.maximum(1, near[:, 2:4] + jitter[:, 2:4])]
    confused = rng.random(len(near)) < 0.1
    det_cls = np.where(confused, rng.integers(1, 11, len(near)), near[:, 5])
    det_score = rng.beta(2, 2, len(near))
    m = max(0, max_dets + 50 - len(near))
    bg = np.c_[rng.uniform(0, width, m), rng.uniform(0, height, m), rng.uniform(5, 60, (m, 2))]
    det = np.r_[np.c_[boxes, det_score, det_cls], np.c_[bg, rng.beta(1, 6, m), rng.integers(1, 11, m)]]
    det = np.c_[np.round(det[:, :4], 2), np.round(det[:, 4], 4), det[:, 5]]
    det = det[np.argsort(-det[:, 4], kind="stable")][:max_dets]
    det = np.c_[det, -np.ones((len(det), 2))]
    return ImageRows(name, int(height), int(width), gt, det)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header gives the size (all imagesize reads)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def write_folders(images: list[ImageRows], root: Path) -> tuple[Path, Path, Path]:
    gt_dir, pred_dir, img_dir = root / "annotations", root / "results", root / "images"
    for d in (gt_dir, pred_dir, img_dir):
        d.mkdir()
    for im in images:
        (gt_dir / f"{im.name}.txt").write_text(format_visdrone_lines(im.gt))
        (pred_dir / f"{im.name}.txt").write_text(format_visdrone_lines(im.det))
        (img_dir / f"{im.name}.png").write_bytes(png_header(im.width, im.height))
    return gt_dir, pred_dir, img_dir


def time_coco(evaluator_cls, coco_cls, dataset: dict, results: list[dict]) -> float:
    gt = coco_cls()
    gt.dataset = dataset
    gt.createIndex()
    dt = gt.loadRes(results)
    start = time.perf_counter()
    evaluator = evaluator_cls(gt, dt, "bbox")
    configure(evaluator)
    evaluator.evaluate()
    evaluator.accumulate()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=548)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    images = [make_image(rng, f"{i:07d}_val") for i in range(args.images)]
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, pred_dir, img_dir = write_folders(images, Path(tmp))
        ours = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            loaded = load_images(gt_dir, pred_dir, img_dir)
            t_read = time.perf_counter() - start
            result = evaluate_visdrone(loaded)
            ours.append((time.perf_counter() - start, t_read))
    total, read = min(ours)
    dataset, results = coco_view_datasets(images)

    import contextlib
    import io

    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster
    from pycocotools.coco import COCO as PCOCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        t_pyc = time_coco(COCOeval, PCOCO, dataset, results)
        t_fast = min(time_coco(COCOeval_faster, FCOCO, dataset, results) for _ in range(args.repeat))

    n_gt = sum(len(im.gt) for im in images)
    n_det = sum(len(im.det) for im in images)
    table = Table(title=f"{args.images} images, {n_gt} gt rows, {n_det} detections (seed {args.seed})")
    for col in ("evaluator", "seconds", "ratio to ours"):
        table.add_column(col, justify="right" if col != "evaluator" else "left")
    table.add_row("afmcli VisDrone view (read + eval)", f"{total:.2f}", "1.00")
    table.add_row("  of which reading txt + headers", f"{read:.2f}", "")
    table.add_row("pycocotools COCOeval (eval + accumulate)", f"{t_pyc:.2f}", f"{t_pyc / total:.2f}")
    table.add_row("faster-coco-eval (eval + accumulate)", f"{t_fast:.2f}", f"{t_fast / total:.2f}")
    console.print(table)
    console.print("VisDrone view: " + ", ".join(f"{k} {v:.2f}" for k, v in result.stats.items()))


if __name__ == "__main__":
    main()
