"""`afm infer`: sliced inference plus a full-image pass, fused."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def infer(
    config: Path = typer.Argument(...),
    checkpoint: Path = typer.Argument(...),
    source: Path = typer.Argument(..., help="An image, a folder of images, or a COCO json."),
    out: Path = typer.Option(..., "--out"),
    slice_size: int = typer.Option(640, "--slice"),
    overlap: float = typer.Option(0.25, "--overlap"),
    batch_size: int = typer.Option(8, "--batch-size"),
    no_full_image: bool = typer.Option(False, "--no-full-image"),
    no_slices: bool = typer.Option(False, "--no-slices"),
    score_thr: float = typer.Option(0.01, "--score-thr"),
    device: str = typer.Option("cpu", "--device"),
    viz: bool = typer.Option(False, "--viz"),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint"),
) -> None:
    """Detect on images with overlapping tiles and a full-image pass."""
    raise NotImplementedError("infer is not implemented yet")
