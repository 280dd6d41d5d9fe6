"""`afm infer`'s speed options (--fp16, --device-tiles, --fuse-conv-bn, --channels-last) beside the plain run
with one trained model, side by side in one run: AP of both views, time, and how far the
detections move.

    .venv/bin/python bench/bench_infer_options.py CONFIG CHECKPOINT VAL_JSON          # CPU
    .venv/bin/python bench/bench_infer_options.py CONFIG CHECKPOINT VAL_JSON --device cuda --batch 32 \
        --options fp16 device_tiles fuse_conv_bn channels_last all

A trained checkpoint is what makes the AP comparison mean something: the staged real-data
bench leaves them (`bench/bench_accuracy.py --real --preset full --staged --work W`:
W/TOOD/work_dir/epoch_2.pth, W/AFMNet/work_dir/epoch_2.pth, the configs beside them, the
validation json at W/Datasets/labels/annotations/val_labels.json). The plain run and one
run per --options entry (``all``: every option at once) each predict every image of VAL_JSON
the way `afm infer` does (afmcli.predict_source: tiles, full pass, fusion), are scored by
afmcli.evaluate and timed end to end. Reported per run: COCO AP, AP50, AP_small, VisDrone AP,
seconds, images/s, the AP difference to the plain run (goal for fp16: within 0.1) and the
box shift of each plain detection scoring >= 0.3 to the closest one of its class in that run
(median and 99th percentile, pixels).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import afmcli

METRICS = (("coco", "AP"), ("coco", "AP50"), ("coco", "AP_small"), ("visdrone", "AP"))


OPTIONS = ("fp16", "device_tiles", "fuse_conv_bn", "channels_last")


def run(model, val: Path, args, device_tiles: bool) -> tuple[dict, float]:
    """{image_id: Detections} over ``val`` and the seconds it took."""
    start = time.perf_counter()
    dets = {item.image_id: d for item, d in afmcli.predict_source(
        model, val, slice=args.slice, overlap=args.overlap, batch_size=args.batch, workers=args.workers,
        images_dir=args.images, device_tiles=device_tiles)}
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return dets, time.perf_counter() - start


def box_shifts(want: dict, got: dict, min_score: float = 0.3) -> np.ndarray:
    """For each detection of ``want`` scoring >= ``min_score``, the largest coordinate
    difference (pixels) to the closest detection of its class in ``got`` on the same image."""
    shifts = []
    for image_id, a in want.items():
        b = got[image_id]
        for box, label in zip(a.boxes[a.scores >= min_score], a.labels[a.scores >= min_score]):
            same = b.boxes[b.labels == label]
            shifts.append(np.abs(same - box).max(axis=1).min() if len(same) else np.inf)
    return np.asarray(shifts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("val", type=Path, help="our COCO json of the images to predict (with their labels)")
    parser.add_argument("--images", type=Path, help="its images folder (default: the split's, as afm infer)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slice", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--options", nargs="+", choices=(*OPTIONS, "all"), default=["fp16"],
                        help="a run for each, beside the plain one")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    results = {}
    for name in ("plain", *args.options):
        on = set(OPTIONS) if name == "all" else {name} - {"plain"}
        model = afmcli.load_model(args.config, args.checkpoint, args.device, fp16="fp16" in on,
                                  fuse_conv_bn="fuse_conv_bn" in on, channels_last="channels_last" in on)
        dets, seconds = run(model, args.val, args, "device_tiles" in on)
        results[name] = dets, seconds, afmcli.evaluate(args.val, dets)
    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} thread(s)"
    plain, t_plain, m_plain = results["plain"]
    n = len(plain)
    table = Table(title=f"afm infer's options: {args.config.name}, {n} images, {args.slice}-px tiles, batch "
                        f"{args.batch} ({where})")
    for column in ("run", *(f"{view} {name}" for view, name in METRICS), "seconds", "images/s", "time / plain",
                   "AP - plain", "box shift median / p99 px"):
        table.add_column(column, justify="right")
    for name, (dets, seconds, metrics) in results.items():
        shifts = box_shifts(plain, dets)
        table.add_row(name, *(f"{metrics[view][key]:.2f}" for view, key in METRICS), f"{seconds:.1f}",
                      f"{n / seconds:.2f}", f"{seconds / t_plain:.2f}x",
                      f"{metrics['coco']['AP'] - m_plain['coco']['AP']:+.2f}",
                      f"{np.median(shifts):.3f} / {np.percentile(shifts, 99):.3f}" if len(shifts) else "-")
    Console(width=180).print(table)


if __name__ == "__main__":
    main()
