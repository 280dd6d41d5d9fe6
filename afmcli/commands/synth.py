"""`afm synth`: a deterministic synthetic VisDrone split in the official layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def synth(
    out: Path = typer.Argument(..., help="Folder to write (gets images/ and annotations/)."),
    split: str = typer.Option("train", "--split"),
    images: int = typer.Option(20, "--images", help="Number of images."),
    seed: int = typer.Option(0, "--seed"),
    width: Optional[int] = typer.Option(None, "--width", help="Fix the image width (with --height); "
                                        "default: VisDrone's sizes, 960x540 to 2000x1500."),
    height: Optional[int] = typer.Option(None, "--height", help="Fix the image height (with --width)."),
    workers: int = typer.Option(0, "--workers", help="Processes; 0 = all cores (output is the same)."),
) -> None:
    """Generate a VisDrone-like split: 10 learnable classes, mostly small, dense objects."""
    from afmcli.data.report import print_summary
    from afmcli.data.synth import write_synth_split

    counts = write_synth_split(out, split, images, seed, width, height, workers)
    print_summary(f"afm synth ({split}, seed {seed})", {"images": images, **counts, "output": str(out)})
