"""`afm train`: mmengine's Runner with a rich progress display."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

# The library's names of parameters that this command spells otherwise.
FLAGS = {"trust=True": "--trust-checkpoint", "slice_size": "--slice"}

EXAMPLES = """Examples:

  afm train configs/AFM/AFMNet-tood_r50_k13_sliced.py --data data.yaml --slice 640

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
    data: Optional[Path] = typer.Option(None, "--data", help="Train on this dataset: an ultralytics data.yaml, "
                                        "afm's dataset yaml (format: coco), a COCO json or a VisDrone split folder; "
                                        "written into WORK_DIR/data/, every num_classes and dataset key set from it."),
    images: Optional[Path] = typer.Option(None, "--images", help="With a COCO json --data: its image folder."),
    slice_size: Optional[List[int]] = typer.Option(None, "--slice", help="With --data: also cut the training "
                                                   "images into crops of this size (for the _sliced configs)."),
    overlap: float = typer.Option(0.25, "--overlap", help="With --slice: overlap ratio of the crops."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="With --data: skip damaged images and malformed "
                                  "label files (listed) instead of stopping."),
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

    if data is None and (images or slice_size or skip_bad or overlap != 0.25):
        from afmcli.errors import AfmError

        raise AfmError("--images, --slice, --overlap and --skip-bad go with --data DATA")

    def report(prepared) -> None:
        from afmcli.commands.convert import print_splits, say_skipped

        print_splits(f"--data {data} ({len(prepared.classes)} classes: {', '.join(prepared.classes)})",
                     prepared.splits)
        for split in prepared.splits:
            say_skipped(split.data.skipped)

    options = dict(slice_size=slice_size, overlap=overlap, skip_bad=skip_bad, images=images)
    runner = run_training(config, work_dir=work_dir, resume=resume, amp=amp, cfg_options=cfg_options,
                          launcher=launcher, data_root=data_root, trust_checkpoint=trust_checkpoint,
                          max_time=max_time, data=data, data_options=options, data_report=report, verbose=verbose)
    from rich.console import Console

    Console().print(f"done: epoch {runner.epoch}, iteration {runner.iter}; checkpoints in {runner.work_dir}, "
                    f"the full log in {runner.log_dir}", markup=False, highlight=False, soft_wrap=True)
