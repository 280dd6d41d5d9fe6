"""What training shows on the terminal: a rich progress bar with the current losses, and
after each validation (and at the end) a table of the epochs' mean losses and metrics.

mmengine's own log lines (environment, config, every logged iteration) go to the log file
in the work dir only (afmcli.engine.train.QuietRunner), or to the terminal too with
``afm train --verbose``.
"""

from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmdet.registry import HOOKS
from rich.table import Table

from afmcli.progress import console, make_progress

# The metrics a table shows (of mmdet's CocoMetric and afm's VisDroneMetric); all when none is there.
HEADLINE_METRICS = ("AP", "AP50", "bbox_mAP", "bbox_mAP_50")


def _is_loss(key: str) -> bool:
    return key.startswith("loss")


def headline(metrics: dict) -> dict:
    """The headline numbers of a validation's ``metrics``: the AP and AP50 of each view."""
    chosen = {k: v for k, v in metrics.items() if k.rsplit("/", 1)[-1] in HEADLINE_METRICS}
    return chosen or dict(metrics)


def epoch_table(rows: list[tuple[int, dict, dict]]) -> Table:
    """One row per epoch: its mean losses, and the metrics of its validation where it had one."""
    losses = list(dict.fromkeys(k for _, means, _ in rows for k in means))
    metrics = list(dict.fromkeys(k for _, _, values in rows for k in values))
    first, last = rows[0][0], rows[-1][0]
    table = Table(title=f"training: epoch {first}" + (f" to {last}" if last != first else ""),
                  title_justify="left")
    table.add_column("epoch", justify="right")
    for key in losses + metrics:
        table.add_column(key, justify="right")
    for epoch, means, values in rows:
        table.add_row(str(epoch), *(f"{means[k]:.4f}" if k in means else "" for k in losses),
                      *(f"{values[k]:.2f}" if k in values else "" for k in metrics))
    return table


@HOOKS.register_module()
class RichProgressHook(Hook):
    """One live bar over all training iterations (main process, terminal only), and the
    epochs' losses and validation metrics as tables (main process, always).

    mmengine's text logger keeps writing the log file; this is the terminal's view.
    """

    priority = "VERY_LOW"

    def __init__(self, interval: int = 1) -> None:
        self.interval = interval
        self._progress = None
        self._task = None
        self._sums: dict[str, float] = {}
        self._iters = 0
        self._rows: list[tuple[int, dict, dict]] = []  # epochs not shown yet

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
        losses = {k: float(v) for k, v in (outputs or {}).items() if _is_loss(k)}
        for key, value in losses.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._iters += 1
        if self._progress is None or (runner.iter + 1) % self.interval:
            return
        shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        self._progress.update(self._task, completed=runner.iter + 1,
                              description=f"epoch {runner.epoch + 1} {shown}")

    def after_train_epoch(self, runner) -> None:
        if self._iters:
            self._rows.append((runner.epoch + 1, {k: v / self._iters for k, v in self._sums.items()}, {}))
        self._sums, self._iters = {}, 0

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._rows and metrics:
            self._rows[-1][2].update(headline(metrics))
        self._show()

    def after_train(self, runner) -> None:
        self._show()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _show(self) -> None:
        if self._rows and is_main_process():
            # Through the bar's console, so that the live bar stays below the table.
            (self._progress.console if self._progress is not None else console).print(epoch_table(self._rows))
        self._rows = []
