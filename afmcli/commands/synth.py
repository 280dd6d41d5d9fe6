"""`afm synth`: a deterministic synthetic VisDrone split in the official layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm synth VisDrone2019-DET-train --images 20 --seed 0

  afm synth mini-val --split val --images 4 --width 640 --height 480
"""


def synth(
    out: Path = typer.Argument(..., help="Folder to write (gets images/ and "
                              "annotations/; replaced only when afm wrote it)."),
    split: str = typer.Option("train", "--split", help="Split name, as in the official "
                              "folders' names (train, val or test-dev)."),
    images: int = typer.Option(20, "--images", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same files."),
    width: Optional[int] = typer.Option(None, "--width", help="Fix the image width in pixels (with "
                                        "--height); default: VisDrone's sizes, 960x540 to 2000x1500."),
    height: Optional[int] = typer.Option(None, "--height", help="Fix the image height in pixels (with "
                                         "--width)."),
    workers: int = typer.Option(0, "--workers", help="Processes; 0 = all cores (output is the same)."),
) -> None:
    """Generate a VisDrone-like split: 10 learnable classes, mostly small, dense objects."""
    from afmcli.commands.tables import print_summary
    from afmcli.data.synth import write_synth_split

    counts = write_synth_split(out, split, images, seed, width, height, workers)
    print_summary(f"afm synth ({split}, seed {seed})", {"images": images, **counts, "output": str(out)})
