"""`afm convert-visdrone`: official VisDrone split -> the Datasets/ layout with COCO json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def convert_visdrone(
    src: Path = typer.Argument(..., help="Official split folder (with images/ and annotations/), "
                               "or with --to-visdrone a COCO results json."),
    out: Path = typer.Argument(..., help="The Datasets/ root, or with --to-visdrone the result folder."),
    split: str = typer.Option("train", "--split", help="train, val or test-dev."),
    to_visdrone: bool = typer.Option(False, "--to-visdrone",
                                     help="Reverse: COCO results json -> VisDrone result txt folder."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="With --to-visdrone: the COCO json that names the images."),
    slice_size: Optional[int] = typer.Option(None, "--slice", help="Also write sliced crops of this size."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap ratio between crops."),
    min_visible: float = typer.Option(0.5, "--min-visible", help="Keep a clipped box in a crop when at least "
                                      "this fraction of it is visible."),
    copy: bool = typer.Option(False, "--copy", help="Copy images instead of linking them."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad files and report counts."),
) -> None:
    """Convert VisDrone labels to COCO (and back with --to-visdrone)."""
    raise NotImplementedError("convert-visdrone is not implemented yet")
