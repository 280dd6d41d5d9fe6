"""`afm make-masks`: small/large object mask ground truth (gt_mask_s, gt_mask_l)."""

from __future__ import annotations

from pathlib import Path

import typer


def make_masks(
    out: Path = typer.Argument(..., help="The Datasets/ root."),
    split: str = typer.Option("train", "--split"),
    kind: str = typer.Option("oval", "--kind", help="oval (published) or gaussian."),
    small_area: float = typer.Option(32 * 32, "--small-area", help="Boxes under this area (original pixels) are small."),
    workers: int = typer.Option(0, "--workers", help="Processes; 0 = all cores."),
) -> None:
    """Write gt_mask_s / gt_mask_l PNGs (0/255, image resolution) for a split."""
    raise NotImplementedError("make-masks is not implemented yet")
