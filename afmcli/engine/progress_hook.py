"""A rich progress display for training: iteration, ETA and the current losses."""

from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmdet.registry import HOOKS

from afmcli.progress import make_progress


@HOOKS.register_module()
class RichProgressHook(Hook):
    """Shows one live bar over all training iterations (main process, terminal only).

    mmengine's text logger keeps writing the log file; this only adds the live view.
    """

    priority = "VERY_LOW"

    def __init__(self, interval: int = 1) -> None:
        self.interval = interval
        self._progress = None
        self._task = None

    def before_train(self, runner) -> None:
        if not is_main_process():
            return
        self._progress = make_progress()
        if self._progress.disable:
            self._progress = None
            return
        self._progress.start()
        self._task = self._progress.add_task("train", total=runner.max_iters, completed=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self._progress is None or (runner.iter + 1) % self.interval:
            return
        losses = " ".join(f"{k}={float(v):.3f}" for k, v in (outputs or {}).items()
                          if k.startswith("loss") or k == "loss")
        self._progress.update(self._task, completed=runner.iter + 1,
                              description=f"epoch {runner.epoch + 1} {losses}")

    def after_train(self, runner) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
