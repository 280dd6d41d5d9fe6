"""Data pipeline at VisDrone-train scale: conversion and mask rendering, against typical scripts.

    .venv/bin/python bench/bench_data.py [--images 6471] [--boxes 340000] [--peer-images 500]

Builds a labelled split of ``--images`` images with about ``--boxes`` boxes. Images
are small but complete PNGs (blank) whose headers carry VisDrone's real sizes:
conversion reads headers only, and the masks are rendered at those sizes.

Side by side in one run, on the first ``--peer-images`` images:
- conversion: ours vs the usual VisDrone->COCO script (cv2.imread for the size,
  str.split parsing, json.dump);
- masks: ours (`render_object_masks`, cell-centre rule) vs cv2.ellipse per box,
  both writing the two PNGs per image, one process each.
Then ours alone on the whole split, against the goals (conversion <= 30 s, masks
<= 5 min on this 2-core machine). Also prints synthetic vs real label statistics.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afmcli.data.convert import convert_split  # noqa: E402
from afmcli.data.mask_files import PNG_PARAMS, write_mask_files  # noqa: E402
from afmcli.data.synth import VISDRONE_SIZE_SHARES, VISDRONE_SIZES, synth_image  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared/data/aerial-samples/visdrone2019-det-train-first50image.json"


def blank_png(width: int, height: int) -> bytes:
    """A complete grey PNG of any size in a few kB (its rows compress to almost nothing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def make_split(src: Path, n_images: int, n_boxes: int, seed: int = 0) -> None:
    """Official layout; boxes log-normal around VisDrone's sizes, clustered, a few score-0,
    ignored regions and category-11 rows."""
    rng = np.random.default_rng(seed)
    pngs = {size: blank_png(*size) for size in VISDRONE_SIZES}
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    counts = rng.poisson(n_boxes / n_images, n_images)
    for i, n in enumerate(counts):
        w, h = VISDRONE_SIZES[rng.choice(len(VISDRONE_SIZES), p=VISDRONE_SIZE_SHARES)]
        bw = np.clip(rng.lognormal(np.log(22), 0.7, n), 2, w / 3).round()
        bh = np.clip(bw * rng.lognormal(0, 0.3, n), 2, h / 3).round()
        x = rng.integers(0, w - bw.astype(int)).astype(float)
        y = rng.integers(0, h - bh.astype(int)).astype(float)
        cat = rng.integers(1, 12, n)
        score = (rng.random(n) > 0.05).astype(int)
        cat[rng.random(n) < 0.01] = 0
        rows = np.stack([x, y, bw, bh, np.where(cat == 0, 0, score), cat, rng.integers(0, 2, n),
                         rng.integers(0, 3, n)], axis=1).astype(int)
        name = f"{i:07d}_00000_d_{i:07d}"
        (src / "images" / f"{name}.png").write_bytes(pngs[(w, h)])
        (src / "annotations" / f"{name}.txt").write_text("".join(",".join(map(str, r)) + ",\n" for r in rows))


def peer_convert(src: Path, out_json: Path, limit: int) -> None:
    """The usual script: decode each image for its size, split lines by hand."""
    images, anns = [], []
    for image_id, img_path in enumerate(sorted((src / "images").iterdir())[:limit], start=1):
        h, w = cv2.imread(str(img_path)).shape[:2]
        images.append({"id": image_id, "file_name": img_path.name, "width": w, "height": h})
        for line in (src / "annotations" / f"{img_path.stem}.txt").read_text().splitlines():
            f = [int(v) for v in line.strip().rstrip(",").split(",")]
            if f[5] in (0, 11):
                continue
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": f[5], "bbox": f[:4],
                         "area": f[2] * f[3], "iscrowd": int(f[4] == 0)})
    out_json.write_text(json.dumps({"images": images, "annotations": anns}))


def peer_masks(coco: dict, out: Path, small_area: float = 1024) -> None:
    """cv2.ellipse per box at image resolution, one process."""
    boxes: dict[int, list] = {}
    for a in coco["annotations"]:
        if not a["iscrowd"]:
            boxes.setdefault(a["image_id"], []).append(a["bbox"])
    for img in coco["images"]:
        ms = np.zeros((img["height"], img["width"]), np.uint8)
        ml = np.zeros_like(ms)
        for x, y, w, h in boxes.get(img["id"], []):
            cv2.ellipse(ms if w * h < small_area else ml, (int(x + w / 2), int(y + h / 2)),
                        (int(w / 2), int(h / 2)), 0, 0, 360, 255, -1)
        cv2.imwrite(str(out / f"s_{img['id']}.png"), ms, PNG_PARAMS)
        cv2.imwrite(str(out / f"l_{img['id']}.png"), ml, PNG_PARAMS)


def subset(src: Path, dst: Path, limit: int) -> None:
    for sub in ("images", "annotations"):
        (dst / sub).mkdir(parents=True)
    for img in sorted((src / "images").iterdir())[:limit]:
        (dst / "images" / img.name).symlink_to(img)
        (dst / "annotations" / f"{img.stem}.txt").symlink_to(src / "annotations" / f"{img.stem}.txt")


def timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def label_stats(boxes_wh: np.ndarray, counts) -> list[str]:
    area = boxes_wh[:, 0] * boxes_wh[:, 1]
    return [f"{np.mean(counts):.1f}", f"{np.median(boxes_wh[:, 0]):.0f} x {np.median(boxes_wh[:, 1]):.0f}",
            f"{np.mean(area < 16 * 16):.0%}", f"{np.mean(area < 32 * 32):.0%}", f"{np.mean(area < 96 * 96):.0%}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6471)
    ap.add_argument("--boxes", type=int, default=340_000)
    ap.add_argument("--peer-images", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench_data_", dir=args.workdir))
    try:
        src = work / "VisDrone2019-DET-train"
        t_gen = timed(make_split, src, args.images, args.boxes)
        console.print(f"generated {args.images} images in {t_gen:.1f} s under {work}")

        small = work / "small"
        subset(src, small, args.peer_images)
        t_ours_conv = timed(convert_split, small, work / "D_small", "train")
        t_peer_conv = timed(peer_convert, small, work / "peer.json", args.peer_images)
        coco_small = json.loads((work / "D_small/labels/annotations/train_labels.json").read_text())
        t_ours_mask = timed(write_mask_files, work / "D_small", "train", workers=1)
        (work / "peer_masks").mkdir()
        t_peer_mask = timed(peer_masks, coco_small, work / "peer_masks")

        t_conv = timed(convert_split, src, work / "D", "train")
        coco = json.loads((work / "D/labels/annotations/train_labels.json").read_text())
        t_mask = timed(write_mask_files, work / "D", "train")

        table = Table(title=f"Side by side, first {args.peer_images} images, 1 process")
        for col in ("step", "ours (s)", "typical script (s)", "ours / script"):
            table.add_column(col, justify="right")
        table.add_row("convert (headers vs cv2.imread)", f"{t_ours_conv:.2f}", f"{t_peer_conv:.2f}",
                      f"{t_ours_conv / t_peer_conv:.2f}")
        table.add_row("masks (cell-centre rule vs cv2.ellipse)", f"{t_ours_mask:.2f}", f"{t_peer_mask:.2f}",
                      f"{t_ours_mask / t_peer_mask:.2f}")
        console.print(table)

        table = Table(title=f"Whole split: {len(coco['images'])} images, {len(coco['annotations'])} boxes")
        for col in ("step", "seconds", "goal (s)", "met"):
            table.add_column(col, justify="right")
        table.add_row("convert-visdrone", f"{t_conv:.1f}", "30", str(t_conv <= 30))
        table.add_row("make-masks (all cores)", f"{t_mask:.1f}", "300", str(t_mask <= 300))
        console.print(table)

        real = json.loads(REAL.read_text())
        real_wh = np.array([a["bbox"][2:] for a in real["annotations"]], float)
        real_counts = np.bincount([a["image_id"] for a in real["annotations"]], minlength=51)[1:]
        rows = [synth_image(0, "train", i)[1] for i in range(50)]
        syn = [r[(r[:, 5] > 0) & (r[:, 5] < 11)] for r in rows]
        table = Table(title="Labels: `afm synth` (50 images, seed 0) vs real VisDrone (first 50 train)")
        for col in ("set", "boxes/image", "median w x h", "< 16x16", "< 32x32", "< 96x96"):
            table.add_column(col, justify="right")
        table.add_row("real", *label_stats(real_wh, real_counts))
        table.add_row("synth", *label_stats(np.concatenate(syn)[:, 2:4], [len(s) for s in syn]))
        console.print(table)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
