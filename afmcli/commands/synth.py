"""`afm synth`: a deterministic synthetic VisDrone split in the official layout."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Argument(..., help="Folder to write (gets images/ and annotations/)."),
    split: str = typer.Option("train", "--split"),
    images: int = typer.Option(20, "--images", help="Number of images."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Generate a VisDrone-like split: 10 learnable classes, mostly small, dense objects."""
    raise NotImplementedError("synth is not implemented yet")
