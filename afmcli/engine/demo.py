"""The whole pipeline on a generated mini VisDrone set, on CPU, as a user types it.

Each step is the real `afm` subcommand, run in-process with the arguments printed,
so the demo shows exactly the commands a user would run on real data. The caller
passes the `afm` command in (``afmcli.cli.app``, or the click command running now).
"""

from __future__ import annotations

import contextlib
import io
import shlex
import time
from pathlib import Path
from typing import Callable

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

App = Callable[..., object]  # the `afm` command: app(args=[...], prog_name=..., standalone_mode=False)


def run_step(app: App, args: list[str], quiet: bool = False) -> float:
    """Run ``afm args`` in this process; the seconds it took. ``quiet``: without the step's
    own summary tables (its stdout), keeping mmengine's warnings, afm's (on stderr) and
    the training's progress and epoch tables (on stderr too)."""
    console.rule(f"[bold]afm {shlex.join(args)}")
    start = time.perf_counter()
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown) if quiet else contextlib.nullcontext():
        code = app(args=args, prog_name="afm", standalone_mode=False)
    for line in shown.getvalue().splitlines():
        if " - WARNING - " in line or " - ERROR - " in line:  # mmengine's logger
            console.print(line, markup=False, highlight=False)
    if isinstance(code, int) and code:
        raise AfmError(f"demo step failed (exit {code}): afm {shlex.join(args)}")
    return time.perf_counter() - start


def last_checkpoint(work_dir: Path) -> Path:
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        raise AfmError(f"{work_dir}: training wrote no checkpoint")
    return Path(marker.read_text().strip())


def make_synthetic_split(app: App, out: Path, train_images: int, val_images: int, width: int,
                         height: int, quiet: bool = False) -> tuple[Path, dict[str, float]]:
    """`afm synth` train and val sets in VisDrone's layout, converted (``quiet``: as run_step).

    Returns the Datasets/ root and the seconds each step took.
    """
    raw, data = out / "raw", out / "Datasets"
    size = ["--width", str(width), "--height", str(height)]
    times: dict[str, float] = {}
    times["synth"] = sum(
        run_step(app, ["synth", str(raw / f"VisDrone2019-DET-{split}"), "--split", split,
                  "--images", str(n), "--seed", str(seed), *size], quiet)
        for split, n, seed in (("train", train_images, 0), ("val", val_images, 1)))
    times["convert-visdrone"] = sum(
        run_step(app, ["convert-visdrone", str(raw / f"VisDrone2019-DET-{split}"), str(data), "--split", split], quiet)
        for split in ("train", "val"))
    return data, times


def run_demo(app: App, out: Path, config: Path = DEMO_CONFIG, verbose: bool = False) -> dict:
    """Run every step into ``out``; return the VisDrone/COCO metrics dict (``verbose``: train
    with --verbose)."""
    out = Path(out)
    quiet = not verbose  # each step's own tables only with --verbose: the demo sums up at the end
    data, times = make_synthetic_split(app, out, TRAIN_IMAGES, VAL_IMAGES, IMAGE_W, IMAGE_H, quiet)
    ann = data / "labels" / "annotations"
    work_dir, infer_dir = out / "work_dir", out / "infer"
    times["make-masks"] = run_step(app, ["make-masks", str(data), "--split", "train"], quiet)
    times["train"] = run_step(app, ["train", str(config), "--work-dir", str(work_dir), "--data-root", str(data),
                                    *(["--verbose"] if verbose else [])], quiet)
    checkpoint = last_checkpoint(work_dir)
    times["infer"] = run_step(app, ["infer", str(config), str(checkpoint), str(ann / "val_labels.json"),
                               "--out", str(infer_dir), "--slice", str(SLICE), "--overlap", str(OVERLAP),
                               "--batch-size", "8", "--viz", "--overwrite"], quiet)  # the demo owns its folder
    times["fuse"] = run_step(app, ["fuse", str(infer_dir / "sources" / "slices.json"),
                              str(infer_dir / "sources" / "full.json"), "--out", str(out / "fused_wbf.json"),
                              "--method", "wbf", "--gt", str(ann / "val_labels.json")], quiet)
    metrics_json = out / "metrics.json"
    times["evaluate"] = run_step(app, ["evaluate", "--gt", str(ann / "val_labels.json"),
                                  "--pred", str(infer_dir / "predictions.json"), "--json", str(metrics_json),
                                  "--plots", str(out / "plots"), "--classwise", "--report", str(out / "report")],
                                  quiet)

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
        ("report (open in a browser)", out / "report" / "index.html"),
        ("metrics", metrics_json)]:
        table.add_row(what, str(where))
    console.print(table)
    steps = Table(title="afm demo: time per step (s)")
    for name in times:
        steps.add_column(name, justify="right")
    steps.add_row(*(f"{t:.1f}" for t in times.values()))
    console.print(steps)
    visdrone = metrics.get("visdrone", {})
    console.print(f"afm demo done in {sum(times.values()):.0f} s: VisDrone AP {visdrone.get('AP', float('nan')):.2f}, "
                  f"AP50 {visdrone.get('AP50', float('nan')):.2f} (%); report: {out / 'report' / 'index.html'}",
                  markup=False, highlight=False, soft_wrap=True)
    return metrics
