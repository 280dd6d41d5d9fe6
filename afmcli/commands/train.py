"""`afm train`: mmengine's Runner with a rich progress display."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

# The library's names of parameters that this command spells otherwise.
FLAGS = {"trust=True": "--trust-checkpoint"}

EXAMPLES = """Examples:

  afm train configs/AFM/AFMNet-tood_r50_k13.py --data-root Datasets/

  afm train configs/AFM/AFMNet-tood_r50_k13.py --work-dir work_dirs/run1 --resume --cfg-options train_cfg.max_epochs=12
"""


def train(
    config: Path = typer.Argument(..., help="An mmdet config, e.g. configs/AFM/AFMNet-tood_r50_k13.py."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Logs and checkpoints "
                                            "(default: work_dirs/<config name>)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="'auto' resumes from the latest "
                                         "checkpoint in the work dir; or a checkpoint path."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (AmpOptimWrapper)."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options",
                                                    help="key=value config overrides, as in "
                                                    "mmdet's tools (several after one flag, or repeat it)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="The Datasets/ root for every "
                                            "dataloader and evaluator."),
    launcher: str = typer.Option("none", "--launcher", help="none, pytorch (torchrun) or slurm."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Fully unpickle the "
                                          "load_from/resume file (only for files you trust)."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Wall-clock limit, e.g. 2h, 90m, "
                                           "1h30m or 600 (seconds): ends at the last epoch forecast to "
                                           "finish within it, with its checkpoint."),
    verbose: bool = typer.Option(False, "--verbose", help="Also print mmengine's log on the terminal (the "
                                 "environment, the config, every logged iteration); it is always in the "
                                 "work dir's log file."),
) -> None:
    """Train a detector from a config (mmengine Runner; logs and checkpoints in the work dir)."""
    from afmcli.engine.train import train as run_training

    runner = run_training(config, work_dir=work_dir, resume=resume, amp=amp, cfg_options=cfg_options,
                          launcher=launcher, data_root=data_root, trust_checkpoint=trust_checkpoint,
                          max_time=max_time, verbose=verbose)
    from rich.console import Console

    Console().print(f"done: epoch {runner.epoch}, iteration {runner.iter}; checkpoints in {runner.work_dir}, "
                    f"the full log in {runner.log_dir}", markup=False, highlight=False, soft_wrap=True)
