"""`afm fuse`: merge COCO result files (tiles, heads, models, TTA)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLES = """Examples:

  afm fuse results/a/predictions.json results/b/predictions.json --method wbf --weights 2 1 --out fused.json

  afm fuse results/val/sources/slices.json results/val/sources/full.json --out fused.json --gt Datasets/labels/annotations/val_labels.json --visdrone-dir fused_visdrone
"""


def fuse(
    preds: List[Path] = typer.Argument(..., help="COCO results json files (from `afm infer` "
                                   "or any detector)."),
    out: Path = typer.Option(..., "--out", help="The fused COCO results json to write."),
    method: str = typer.Option("nms", "--method", help="nms, soft-nms, wbf or greedy-nmm."),
    iou: float = typer.Option(0.6, "--iou", help="Overlap threshold in (0, 1] at which boxes are "
                              "merged or suppressed."),
    match: str = typer.Option("iou", "--match", help="Overlap measure: iou, or ios (intersection "
                              "over the smaller box; nms and greedy-nmm)."),
    class_agnostic: bool = typer.Option(False, "--class-agnostic", help="Fuse boxes of different "
                                        "classes too (not with wbf)."),
    weights: Optional[List[float]] = typer.Option(None, "--weights", help="One per file, e.g. "
                                                  "--weights 2 1: WBF model weights, else score factors."),
    max_per_img: int = typer.Option(500, "--max-per-img", help="Keep at most this many detections "
                                     "per image (the best; VisDrone's toolkit reads 500)."),
    visdrone_dir: Optional[Path] = typer.Option(None, "--visdrone-dir", help="Also write VisDrone "
                                                "txt files (needs --gt for the file names)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="The COCO json of these images: checks "
                                      "image ids, gives WBF the image sizes, names VisDrone files."),
) -> None:
    """Fuse prediction files into one (and optionally a VisDrone txt folder).

    Both outputs are written, or neither.
    """
    from rich.console import Console
    from rich.table import Table

    from afmcli.inference.fuse_files import fuse_files
    from afmcli.io import output_locks

    with output_locks("afm fuse", out=out, visdrone_dir=visdrone_dir):
        summary = fuse_files(preds, out, method=method, iou=iou, match=match, class_agnostic=class_agnostic,
                             weights=weights or None, max_per_img=max_per_img, visdrone_dir=visdrone_dir,
                             gt=gt)
    table = Table(title=f"afm fuse ({method}, {match} {iou}) -> {out}")
    table.add_column("source")
    table.add_column("images", justify="right")
    table.add_column("detections", justify="right")
    for name, n_images, n_dets in summary:
        table.add_row(name, str(n_images), str(n_dets))
    Console().print(table)
