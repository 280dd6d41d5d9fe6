"""`afm demo`: the whole pipeline on a generated mini VisDrone set, on CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(out: Path = typer.Option(Path("demo_out"), "--out")) -> None:
    """synth -> convert -> masks -> train -> infer -> fuse -> evaluate."""
    raise NotImplementedError("demo is not implemented yet")
