"""A wall-clock limit for training: the run ends, with its checkpoint, before the limit."""

from __future__ import annotations

import re
from time import monotonic

from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmdet.registry import HOOKS

NUMBER = r"\d+(?:\.\d*)?"
DURATION = re.compile(rf"(?:(?P<h>{NUMBER})h)?(?:(?P<m>{NUMBER})m)?(?:(?P<s>{NUMBER})s)?")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a number of seconds, or hours/minutes/seconds such as 2h, 90m, 1h30m, 45s."""
    text = str(text).strip().lower()
    if re.fullmatch(NUMBER, text):
        seconds = float(text)
    else:
        match = DURATION.fullmatch(text)
        if not match or not any(match.groups()):
            raise ValueError(f"expected a duration such as 90m, 1h30m or 600 (seconds), got {text!r}")
        seconds = sum(float(match[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
    if not seconds > 0:
        raise ValueError(f"expected a duration above 0, got {text!r}")
    return seconds


@HOOKS.register_module()
class TrainTimeLimitHook(Hook):
    """Ends training at the last epoch (or iteration, for iteration-based loops) that is
    forecast to finish within ``max_time`` of the start of this run's training.

    The forecast is the mean duration of the epochs done so far (validation included), so
    with steady epochs the run ends before the limit; a first epoch longer than the limit
    still completes. Ending is done by shortening the loop's schedule to the epochs done,
    so mmengine's CheckpointHook saves that epoch as the last one and validation runs as
    at a schedule's end. The learning-rate schedule stays the config's. Ranks of a
    distributed run follow rank 0's decision.
    """

    # Before CheckpointHook (VERY_LOW), which must see the shortened schedule.
    priority = "LOW"

    def __init__(self, max_time: str | float | int) -> None:
        self.max_time = parse_duration(max_time)
        self._start: float | None = None
        self._first: int = 0
        self.stopped_at: int | None = None

    def before_train(self, runner) -> None:
        self._start = monotonic()
        loop = runner.train_loop
        self._first = loop.epoch if self._by_epoch(runner) else loop.iter

    @staticmethod
    def _by_epoch(runner) -> bool:
        return hasattr(runner.train_loop, "run_epoch")

    def _ends_here(self, done: int) -> bool:
        """Whether the step after ``done`` steps of this run would end past the limit."""
        elapsed = monotonic() - self._start
        decision = [elapsed + elapsed / done > self.max_time]
        broadcast_object_list(decision, src=0)
        return bool(decision[0])

    def after_train_epoch(self, runner) -> None:
        if not self._by_epoch(runner) or runner.epoch + 1 >= runner.max_epochs:
            return
        if self._ends_here(runner.epoch + 1 - self._first):
            self._end(runner, runner.epoch + 1, runner.max_epochs, "epoch")
            loop = runner.train_loop
            loop._max_epochs = runner.epoch + 1
            loop._max_iters = loop._max_epochs * len(loop.dataloader)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self._by_epoch(runner) or runner.iter + 1 >= runner.max_iters:
            return
        if self._ends_here(runner.iter + 1 - self._first):
            self._end(runner, runner.iter + 1, runner.max_iters, "iteration")
            runner.train_loop._max_iters = runner.iter + 1

    def _end(self, runner, done: int, planned: int, unit: str) -> None:
        self.stopped_at = done
        runner.logger.info(f"TrainTimeLimitHook: ending after {unit} {done} of {planned}: the next would "
                           f"end past the time limit of {self.max_time:.0f} s")
