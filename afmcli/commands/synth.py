"""`afm synth`: a deterministic synthetic VisDrone split in the official layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm synth VisDrone2019-DET-train --images 20 --seed 0

  afm synth mot-val --sequences 2 --frames 60 --width 640 --height 360
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
    sequences: Optional[int] = typer.Option(None, "--sequences", help="Write this many video sequences with "
                                            "ground-truth tracks instead of images, in VisDrone-MOT's layout "
                                            "(sequences/<seq>/0000001.jpg, annotations/<seq>.txt); default size "
                                            "640x360."),
    frames: int = typer.Option(60, "--frames", help="With --sequences: frames per sequence."),
    objects: Optional[int] = typer.Option(None, "--objects", help="With --sequences: free-moving objects per "
                                          "sequence (default: 25 per megapixel, at least 4)."),
    crossings: int = typer.Option(2, "--crossings", help="With --sequences: pairs of one class that cross."),
) -> None:
    """Generate a VisDrone-like split: 10 learnable classes, mostly small, dense objects
    (with --sequences: VisDrone-MOT-like sequences with ground-truth tracks)."""
    from afmcli.commands.tables import print_summary
    from afmcli.data.synth import write_synth_split

    if sequences is not None:
        from afmcli.data.synth_video import write_synth_sequences

        counts = write_synth_sequences(out, sequences, frames, seed, width or 640, height or 360, objects,
                                       crossings, workers)
        print_summary(f"afm synth (sequences, seed {seed})", {"sequences": sequences, **counts,
                                                              "output": str(out)})
        return
    counts = write_synth_split(out, split, images, seed, width, height, workers)
    print_summary(f"afm synth ({split}, seed {seed})", {"images": images, **counts, "output": str(out)})
