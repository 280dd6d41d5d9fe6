"""`afm fuse`: merge COCO result files (tiles, heads, models, TTA)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def fuse(
    preds: List[Path] = typer.Argument(..., help="COCO results json files."),
    out: Path = typer.Option(..., "--out"),
    method: str = typer.Option("nms", "--method", help="nms, soft-nms, wbf or greedy-nmm."),
    iou: float = typer.Option(0.6, "--iou"),
    match: str = typer.Option("iou", "--match", help="iou or ios."),
    class_agnostic: bool = typer.Option(False, "--class-agnostic"),
    weights: Optional[List[float]] = typer.Option(None, "--weights"),
    max_per_img: int = typer.Option(500, "--max-per-img"),
    visdrone_dir: Optional[Path] = typer.Option(None, "--visdrone-dir"),
) -> None:
    """Fuse prediction files into one."""
    raise NotImplementedError("fuse is not implemented yet")
