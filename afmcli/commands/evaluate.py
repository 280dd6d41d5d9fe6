"""`afm evaluate`: the official VisDrone numbers and the COCO view."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate(
    gt: Path = typer.Option(..., "--gt", help="VisDrone annotations folder or our COCO json."),
    pred: Path = typer.Option(..., "--pred", help="VisDrone results folder or COCO results json."),
    images: Optional[Path] = typer.Option(None, "--images", help="Images folder (sizes), with a txt --gt."),
    view: str = typer.Option("both", "--view", help="visdrone, coco or both."),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    plots: Optional[Path] = typer.Option(None, "--plots"),
    classwise: bool = typer.Option(False, "--classwise"),
) -> None:
    """Evaluate detections."""
    raise NotImplementedError("evaluate is not implemented yet")
