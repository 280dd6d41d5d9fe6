"""A quiet terminal while training: mmengine's log lines (the environment, the config, every
logged iteration) go to the log file in the work dir only, where mmengine users look for
them (``afm train --verbose`` prints them too); the terminal shows afm's progress bar and
epoch tables (afmcli.engine.progress_hook) and the warnings a user can act on."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from typing import Iterator

from afmcli.errors import few, warn

# mmengine's CheckpointHook builds a FileClient whatever the config says (kept "until MMEngine
# 1.0", says its code), and FileClient warns of its own deprecation: nothing a user of afm can
# change. Off the terminal only; the log file keeps them.
UNACTIONABLE_WARNINGS = ('"FileClient" will be deprecated in future',
                         '"HardDiskBackend" is the alias of "LocalBackend"')


class _Actionable(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(UNACTIONABLE_WARNINGS)


def quiet_runner():
    """mmengine's Runner with the terminal's log handler at WARNING (less the warnings above);
    the log file keeps everything. (Made on call: mmengine is imported only to train.)"""
    from mmengine.runner import Runner

    class QuietRunner(Runner):
        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            for handler in logger.handlers:
                if not isinstance(handler, logging.FileHandler):  # the terminal's
                    handler.setLevel(max(handler.level, logging.WARNING))
                    handler.addFilter(_Actionable())
            return logger

        def load_checkpoint(self, filename, *args, **kwargs):
            # mmengine prints what it loads, and every key that did not match, on stdout
            # (about a hundred for TOOD -> AFMNet): to the log; the terminal gets one line.
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                checkpoint = super().load_checkpoint(filename, *args, **kwargs)
            if printed.getvalue().strip():
                self.logger.info(printed.getvalue().strip())
            model = self.model.module if hasattr(self.model, "module") else self.model
            line = key_mismatch_line(printed.getvalue(), model.state_dict().keys())
            if line:
                warn(f"load_from {filename}: {line} (each key: the log in the work dir)")
            return checkpoint

    return QuietRunner


def key_mismatch_line(printed: str, model_keys) -> str | None:
    """mmengine's report of a checkpoint's keys that did not match the model, in one clause per
    kind, by part: a module all of whose tensors are missing by its name (``hd_head``), else
    by its child (``neck.upsample_modules``)."""
    def listed(label: str) -> list[str]:
        found = re.search(rf"^{label} in source state_dict: (.*)$", printed, re.MULTILINE)
        return [key.strip() for key in found[1].split(",") if key.strip()] if found else []

    def parts(keys: list[str], whole: set[str]) -> list[str]:
        names = []
        for key in keys:
            top, _, rest = key.partition(".")
            names.append(top if top in whole else f"{top}.{rest.split('.')[0]}")
        return list(dict.fromkeys(names))

    missing, unexpected = listed("missing keys"), listed("unexpected key")
    shapes = re.findall(r"size mismatch for ([^:]+):", printed)
    lacking = set(missing)
    present = {key.split(".")[0] for key in model_keys if key not in lacking and "num_batches_tracked" not in key}
    all_missing = {key.split(".")[0] for key in missing} - present
    clauses = []
    if missing:
        clauses.append(f"{len(missing)} tensors of this model are not in it and keep their initialisation "
                       f"({few(parts(missing, all_missing), 5)})")
    if unexpected:
        clauses.append(f"{len(unexpected)} of its tensors have no place in this model "
                       f"({few(parts(unexpected, set()), 5)})")
    if shapes:
        clauses.append(f"{len(shapes)} have another shape here and were not loaded ({few(shapes, 3)})")
    return "; ".join(clauses) or None


@contextlib.contextmanager
def quiet_coco_loads() -> Iterator[None]:
    """mmdet's CocoDataset loads its json with pycocotools, which prints four lines ("loading
    annotations into memory...") per load: in the block, it loads without them. CocoDataset
    takes the class from ``COCOAPI``, there to be replaced (as mmdet's LVIS dataset does)."""
    from mmdet.datasets import CocoDataset

    loud = CocoDataset.COCOAPI

    class QuietCOCO(loud):
        def __init__(self, *args, **kwargs):
            with contextlib.redirect_stdout(io.StringIO()):
                super().__init__(*args, **kwargs)

    CocoDataset.COCOAPI = QuietCOCO
    try:
        yield
    finally:
        CocoDataset.COCOAPI = loud
