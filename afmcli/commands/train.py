"""`afm train`: mmengine's Runner with a rich progress display."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train(
    config: Path = typer.Argument(..., help="An mmdet config, e.g. configs/AFM/AFMNet-tood_r50_k13.py."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir"),
    resume: Optional[str] = typer.Option(None, "--resume", help="'auto' (latest in work dir) or a checkpoint path.",
                                         flag_value="auto", is_flag=False),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", help="key=value overrides."),
    launcher: str = typer.Option("none", "--launcher", help="none, pytorch (torchrun) or slurm."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Fully unpickle load_from/resume files (only for files you trust)."),
) -> None:
    """Train a detector from a config."""
    raise NotImplementedError("train is not implemented yet")
