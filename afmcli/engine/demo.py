"""The whole pipeline on a generated mini VisDrone set, on CPU, as a user types it.

Each step is the real `afm` subcommand, run in-process with the arguments printed,
so the demo shows exactly the commands a user would run on real data.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import afmcli
from afmcli.errors import AfmError

REPO_ROOT = Path(afmcli.__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "AFM" / "afmnet_tiny_synth.py"

# Sizes chosen so that setup-excluded wall time stays well under 10 minutes on 2 cores.
TRAIN_IMAGES, VAL_IMAGES = 48, 12
IMAGE_W, IMAGE_H = 640, 480
SLICE, OVERLAP = 320, 0.25

console = Console()


def _run(args: list[str]) -> float:
    from afmcli.cli import app

    console.rule(f"[bold]afm {shlex.join(args)}")
    start = time.perf_counter()
    code = app(args=args, prog_name="afm", standalone_mode=False)
    if isinstance(code, int) and code:
        raise AfmError(f"demo step failed (exit {code}): afm {shlex.join(args)}")
    return time.perf_counter() - start


def _last_checkpoint(work_dir: Path) -> Path:
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        raise AfmError(f"{work_dir}: training wrote no checkpoint")
    return Path(marker.read_text().strip())


def run_demo(out: Path, config: Path = DEMO_CONFIG) -> dict:
    """Run every step into ``out``; return the VisDrone/COCO metrics dict."""
    out = Path(out)
    raw, data = out / "raw", out / "Datasets"
    ann = data / "labels" / "annotations"
    work_dir, infer_dir = out / "work_dir", out / "infer"
    size = ["--width", str(IMAGE_W), "--height", str(IMAGE_H)]
    times: dict[str, float] = {}
    times["synth"] = _run(["synth", str(raw / "VisDrone2019-DET-train"), "--split", "train",
                           "--images", str(TRAIN_IMAGES), "--seed", "0", *size])
    times["synth"] += _run(["synth", str(raw / "VisDrone2019-DET-val"), "--split", "val",
                            "--images", str(VAL_IMAGES), "--seed", "1", *size])
    times["convert-visdrone"] = sum(
        _run(["convert-visdrone", str(raw / f"VisDrone2019-DET-{split}"), str(data), "--split", split])
        for split in ("train", "val"))
    times["make-masks"] = _run(["make-masks", str(data), "--split", "train"])
    times["train"] = _run(["train", str(config), "--work-dir", str(work_dir), "--data-root", str(data)])
    checkpoint = _last_checkpoint(work_dir)
    times["infer"] = _run(["infer", str(config), str(checkpoint), str(ann / "val_labels.json"),
                           "--out", str(infer_dir), "--slice", str(SLICE), "--overlap", str(OVERLAP),
                           "--batch-size", "8", "--viz"])
    times["fuse"] = _run(["fuse", str(infer_dir / "sources" / "slices.json"),
                          str(infer_dir / "sources" / "full.json"), "--out", str(out / "fused_wbf.json"),
                          "--method", "wbf", "--gt", str(ann / "val_labels.json")])
    metrics_json = out / "metrics.json"
    times["evaluate"] = _run(["evaluate", "--gt", str(ann / "val_labels.json"),
                              "--pred", str(infer_dir / "predictions.json"), "--json", str(metrics_json),
                              "--plots", str(out / "plots"), "--classwise"])

    from afmcli.io import read_json

    metrics = read_json(metrics_json)
    table = Table(title="afm demo: outputs")
    table.add_column("what", style="bold")
    table.add_column("where")
    for what, where in [
        ("COCO json (train, val)", ann), ("official txt labels", data / "labels" / "org"),
        ("masks gt_mask_s / gt_mask_l", data / "labels" / "gt_mask_s"),
        ("checkpoint", checkpoint), ("training log", work_dir),
        ("predictions (COCO, fused)", infer_dir / "predictions.json"),
        ("predictions (VisDrone txt)", infer_dir / "visdrone"),
        ("raw sources (slices, full image)", infer_dir / "sources"),
        ("fused with WBF", out / "fused_wbf.json"),
        ("visualisations", infer_dir / "viz"), ("PR curves", out / "plots"),
        ("metrics", metrics_json)]:
        table.add_row(what, str(where))
    console.print(table)
    steps = Table(title="afm demo: time per step (s)")
    for name in times:
        steps.add_column(name, justify="right")
    steps.add_row(*(f"{t:.1f}" for t in times.values()))
    console.print(steps)
    return metrics
