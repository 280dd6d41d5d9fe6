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

# The metrics a table shows: afm's VisDroneMetric's, else mmdet's CocoMetric's, else all.
HEADLINE_METRICS = (("AP", "AP50"), ("bbox_mAP", "bbox_mAP_50"))


def _is_loss(key: str) -> bool:
    return "loss" in key  # as mmdet sums them: loss_cls, hd_loss_bbox, ...


def _short(key: str) -> str:
    """A loss's column header: loss_cls -> cls, hd_loss_bbox -> hd_bbox (loss stays loss)."""
    return key if key == "loss" else key.replace("loss_", "")


def headline(metrics: dict) -> dict:
    """The headline numbers of a validation's ``metrics`` (the AP and AP50 of each view)."""
    for names in HEADLINE_METRICS:
        chosen = {k: v for k, v in metrics.items() if k.rsplit("/", 1)[-1] in names}
        if chosen:
            return chosen
    return dict(metrics)


def epoch_table(rows: list[tuple[int, dict, dict]]) -> Table:
    """One row per epoch with its mean losses; below, the validation's headline metrics."""
    losses = list(dict.fromkeys(k for _, means, _ in rows for k in means))
    first, last = rows[0][0], rows[-1][0]
    caption = "; ".join(f"validation after epoch {epoch}: " + ", ".join(f"{k} {v:.2f}" for k, v in values.items())
                        for epoch, _, values in rows if values)
    table = Table(title=f"training: epoch {first}" + (f" to {last}" if last != first else "") + ", mean losses",
                  title_justify="left", caption=caption or None, caption_justify="left")
    table.add_column("epoch", justify="right")
    for key in losses:
        table.add_column(_short(key), justify="right")
    for epoch, means, _ in rows:
        table.add_row(str(epoch), *(f"{means[k]:.4f}" if k in means else "" for k in losses))
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
        losses = {k: float(v.detach() if hasattr(v, "detach") else v) for k, v in (outputs or {}).items()
                  if _is_loss(k)}
        for key, value in losses.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._iters += 1
        if self._progress is None or (runner.iter + 1) % self.interval:
            return
        shown = " ".join(f"{_short(k)}={v:.3f}" for k, v in losses.items())
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
