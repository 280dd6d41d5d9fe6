"""Checkpoints load under torch >= 2.6 without switching weights_only off."""

import os

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from afmcli.engine.checkpoint import (install_safe_loader, load_checkpoint, load_checkpoint_file,
                                      trusted)
from afmcli.errors import AfmError


class _ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, y, mode="loss"):
        out = self.lin(x).squeeze(-1)  # default_collate already stacked the batch
        return {"loss": ((out - y) ** 2).mean()}


class _ToyData(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        x = torch.randn(2, generator=torch.Generator().manual_seed(i))
        return dict(x=x, y=x.sum() * 0.5 + 1.0)


class _RecordLoss(Hook):
    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append((runner.iter, float(outputs["loss"])))


class _Interrupted(Exception):
    pass


class _CrashAfterFirstEpoch(Hook):
    priority = "LOWEST"  # after CheckpointHook has saved epoch_1.pth

    def after_train_epoch(self, runner):
        raise _Interrupted


def _runner(work_dir, max_epochs, resume=False, crash=False):
    recorder = _RecordLoss()
    torch.manual_seed(0)  # the model is built before the Runner seeds
    runner = Runner(
        model=_ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_ToyData(), batch_size=4, collate_fn=dict(type="default_collate"),
                              sampler=dict(type="DefaultSampler", shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=6),
                         dict(type="MultiStepLR", milestones=[2], by_epoch=True)],
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1), logger=dict(type="LoggerHook")),
        custom_hooks=[recorder] + ([_CrashAfterFirstEpoch()] if crash else []), randomness=dict(seed=0), resume=resume)
    return runner, recorder


def test_runner_checkpoint_resumes_exactly(tmp_path):
    """Three epochs straight through, against a run interrupted after its first
    epoch and resumed: the losses after the resume are the same numbers (optimizer
    momentum, LR warm-up and milestone, and the sampler's epoch all restored)."""
    install_safe_loader()
    straight, rec_straight = _runner(tmp_path / "a", 3)
    straight.train()

    interrupted, _ = _runner(tmp_path / "b", 3, crash=True)
    with pytest.raises(_Interrupted):
        interrupted.train()
    resumed, rec_resumed = _runner(tmp_path / "b", 3, resume=True)
    resumed.train()  # no trust: mmengine's own checkpoint passes the allow-list

    assert rec_resumed.losses[0][0] == 4  # continues at iteration 5 (0-based 4)
    assert rec_resumed.losses == rec_straight.losses[4:]
    ckpt = load_checkpoint_file(tmp_path / "b" / "epoch_3.pth")
    assert ckpt["meta"]["epoch"] == 3 and ckpt["meta"]["iter"] == 12


class Foreign:
    """A class outside the allow-list, as a malicious pickle would carry."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_foreign_pickle_refused_unless_trusted(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"lin.weight": torch.ones(1, 2)}, "payload": Foreign()}, path)
    with pytest.raises(AfmError, match=r"evil.pth: refusing to unpickle .*getcwd.*pass trust=True only if"):
        load_checkpoint_file(path)
    assert load_checkpoint_file(path, trust=True)["payload"] == os.getcwd()
    with trusted(tmp_path):
        assert load_checkpoint_file(path)["payload"] == os.getcwd()
    with pytest.raises(AfmError):  # trust ends with the block
        load_checkpoint_file(path)


def test_plain_state_dict_loads_into_model(tmp_path):
    model = _ToyModel()
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"lin.weight": torch.full((1, 2), 3.0), "lin.bias": torch.zeros(1)}}, path)
    load_checkpoint(model, path)
    assert model.lin.weight.tolist() == [[3.0, 3.0]]


def test_missing_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(AfmError, match="checkpoint not found"):
        load_checkpoint_file(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(AfmError, match="bad.pth"):
        load_checkpoint_file(bad)
