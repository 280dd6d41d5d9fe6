"""`afm train --max-time`: the duration syntax, and TrainTimeLimitHook ending a real run
at the last epoch forecast to fit, with that epoch's checkpoint."""

import itertools
from types import SimpleNamespace

import pytest

from afmcli.engine import time_limit_hook
from afmcli.engine.time_limit_hook import TrainTimeLimitHook, parse_duration
from afmcli.engine.train import load_config, prepare_config
from afmcli.errors import AfmError
from tests.test_train import NO_VAL, TINY


@pytest.mark.parametrize("text, seconds", [("600", 600), (90, 90), ("45s", 45), ("90m", 5400), ("2h", 7200),
                                           ("1h30m", 5400), ("1h2m3s", 3723), ("1.5h", 5400), (" 10M ", 600),
                                           ("0.5", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1h30", "30m1h", "-5", "1d", "ten", "0", "0m"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_prepare_config_installs_one_limit():
    cfg = load_config(TINY)
    cfg.custom_hooks = [dict(type="TrainTimeLimitHook", max_time=5)]
    cfg = prepare_config(cfg, TINY, max_time="1h30m")
    assert [h for h in cfg.custom_hooks if h["type"] == "TrainTimeLimitHook"] == [
        dict(type="TrainTimeLimitHook", max_time=5400.0)]
    with pytest.raises(AfmError, match=r"^max_time: expected a duration such as 90m, 1h30m or 600 \(seconds\), "
                                       r"got '1 hour'$"):
        prepare_config(load_config(TINY), TINY, max_time="1 hour")


def fake_clock(monkeypatch, step: float) -> None:
    """monotonic() advancing ``step`` seconds per call (one call at the start, one per check)."""
    ticks = itertools.count(0.0, step)
    monkeypatch.setattr(time_limit_hook, "monotonic", lambda: next(ticks))


@pytest.mark.slow
def test_run_ends_at_the_last_epoch_that_fits(synth_split, tmp_path, monkeypatch):
    """Epochs of 10 s, a 25 s limit, 4 epochs planned: after epoch 2 (20 s) the third
    would end at 30 s, so the run ends there; CheckpointHook (interval 4 in this config)
    saves epoch 2 as the last."""
    from afmcli.cli import main

    fake_clock(monkeypatch, 10)
    work_dir = tmp_path / "wd"
    main(["train", str(TINY), "--work-dir", str(work_dir), "--data-root", str(synth_split.root),
          "--max-time", "25", "--cfg-options", "train_cfg.max_epochs=4", "train_dataloader.batch_size=4", *NO_VAL])
    assert sorted(p.name for p in work_dir.glob("*.pth")) == ["epoch_2.pth"]
    log = next(work_dir.glob("*/*.log")).read_text()
    assert "TrainTimeLimitHook: ending after epoch 2 of 4: the next would end past the time limit of 25 s" in log
    assert "Epoch(train) [2][2/2]" in log and "Epoch(train) [3]" not in log


class FakeLoop:
    def __init__(self, max_iters: int, by_epoch: bool):
        self.iter, self.epoch, self._max_iters, self._max_epochs = 0, 0, max_iters, max_iters
        self.dataloader = [0, 0, 0]
        if by_epoch:
            self.run_epoch = lambda: None


class FakeRunner:
    """The Runner's properties the hook reads, over a FakeLoop; logged lines in ``lines``."""

    def __init__(self, loop: FakeLoop):
        self.train_loop, self.lines = loop, []
        self.logger = SimpleNamespace(info=self.lines.append)

    iter = property(lambda self: self.train_loop.iter)
    epoch = property(lambda self: self.train_loop.epoch)
    max_iters = property(lambda self: self.train_loop._max_iters)
    max_epochs = property(lambda self: self.train_loop._max_epochs)


def drive(hook: TrainTimeLimitHook, runner, by_epoch: bool) -> int:
    """Run the hook's calls as mmengine's loop makes them; returns the steps done."""
    hook.before_train(runner)
    loop = runner.train_loop
    while (loop.epoch < loop._max_epochs) if by_epoch else (loop.iter < loop._max_iters):
        if by_epoch:
            hook.after_train_epoch(runner)
            loop.epoch += 1
        else:
            hook.after_train_iter(runner, 0)
            loop.iter += 1
    return loop.epoch if by_epoch else loop.iter


@pytest.mark.parametrize("by_epoch", [True, False])
def test_forecast_counts_this_runs_steps_only(monkeypatch, by_epoch):
    """A resumed run (3 steps done before) of 10 s steps under a 35 s limit does 3 more:
    the forecast divides by this run's steps, not the schedule's."""
    fake_clock(monkeypatch, 10)
    loop = FakeLoop(20, by_epoch)
    loop.iter = loop.epoch = 3
    runner = FakeRunner(loop)
    hook = TrainTimeLimitHook("35s")
    assert drive(hook, runner, by_epoch) == 6 and hook.stopped_at == 6
    unit = "epoch" if by_epoch else "iteration"
    assert runner.lines == [f"TrainTimeLimitHook: ending after {unit} 6 of 20: the next would end past "
                            "the time limit of 35 s"]
    if by_epoch:
        assert loop._max_iters == 6 * len(loop.dataloader)


def test_a_schedule_that_fits_is_untouched(monkeypatch):
    fake_clock(monkeypatch, 1)
    loop = FakeLoop(5, True)
    runner = FakeRunner(loop)
    hook = TrainTimeLimitHook(60)
    assert drive(hook, runner, True) == 5 and hook.stopped_at is None and runner.lines == []
    assert loop._max_epochs == 5
