"""A quiet terminal while training: mmengine's log lines (the environment, the config, every
logged iteration) go to the log file in the work dir only, where mmengine users look for
them (``afm train --verbose`` prints them too); the terminal shows afm's progress bar and
epoch tables (afmcli.engine.progress_hook) and the warnings a user can act on."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterator

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

    return QuietRunner


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
