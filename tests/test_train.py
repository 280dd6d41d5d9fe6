"""`afm train`: config preparation, a real run, resume, and DDP on two CPU processes."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from afmcli.engine.train import load_config, parse_cfg_options, prepare_config, set_data_root
from afmcli.errors import AfmError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "AFM" / "tood_tiny_synth.py"
NO_VAL = ["val_cfg=None", "val_dataloader=None", "val_evaluator=None",
          "test_cfg=None", "test_dataloader=None", "test_evaluator=None"]


def test_cfg_options_parse_like_mmdet():
    opts = parse_cfg_options(["train_cfg.max_epochs=3", "model.bbox_head.num_classes=5",
                              "optim_wrapper.optimizer.lr=0.01", "x=[1,2]", "y=None"])
    assert opts == {"train_cfg.max_epochs": 3, "model.bbox_head.num_classes": 5,
                    "optim_wrapper.optimizer.lr": 0.01, "x": [1, 2], "y": None}
    with pytest.raises(AfmError, match="expected key=value, got 'oops'"):
        parse_cfg_options(["oops"])


def test_prepare_config_applies_choices(tmp_path):
    cfg = load_config(TINY, ["train_cfg.max_epochs=2"])
    cfg = prepare_config(cfg, TINY, work_dir=tmp_path / "wd", resume="auto", amp=True,
                         data_root=str(tmp_path / "data"))
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.work_dir == str(tmp_path / "wd")
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == "dynamic"
    root = str(tmp_path / "data") + "/"
    assert cfg.train_dataloader.dataset.data_root == root
    assert cfg.val_dataloader.dataset.data_root == root
    assert cfg.val_evaluator.ann_file == root + "labels/annotations/val_labels.json"
    assert {"type": "RichProgressHook"} in cfg.custom_hooks


def test_set_data_root_reaches_wrapped_datasets():
    from mmengine.config import Config

    cfg = Config(dict(data_root="a/", train_dataloader=dict(dataset=dict(
        type="RepeatDataset", times=2, dataset=dict(type="CocoDataset", data_root="a/")))))
    set_data_root(cfg, "b/")
    assert cfg.train_dataloader.dataset.dataset.data_root == "b/"
    cfg = Config(dict(data_root="a/", train_dataloader=dict(dataset=dict(
        type="ConcatDataset", datasets=[dict(type="CocoDataset", data_root="a/"),
                                        dict(type="RepeatDataset", dataset=dict(data_root="a/"))]))))
    set_data_root(cfg, "b/")
    inner = cfg.train_dataloader.dataset.datasets
    assert inner[0].data_root == inner[1].dataset.data_root == "b/"


def test_missing_load_from_fails_fast(tmp_path):
    cfg = load_config(TINY, [f"load_from={tmp_path / 'coco_tood.pth'}"])
    with pytest.raises(AfmError, match=r"load_from: .*coco_tood.pth not found; download it"):
        prepare_config(cfg, TINY)
    cfg = load_config(TINY, [f"load_from={tmp_path / 'coco_tood.pth'}"])
    prepare_config(cfg, TINY, resume=str(tmp_path / "coco_tood.pth"))  # resume checks its own file


def test_bad_launcher_is_refused():
    cfg = load_config(TINY)
    with pytest.raises(AfmError, match="^launcher: expected none, pytorch, slurm or mpi, got .mpx.$"):
        prepare_config(cfg, TINY, launcher="mpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes_on_gloo(synth_split, tmp_path):
    """torchrun with 2 processes: the data is split over both ranks, and rank 0
    writes the checkpoint."""
    work_dir = tmp_path / "wd"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "afmcli", "train", str(TINY),
           "--launcher", "pytorch", "--work-dir", str(work_dir), "--data-root", str(synth_split.root),
           "--cfg-options", "train_cfg.max_epochs=1", "train_dataloader.batch_size=2", *NO_VAL]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work_dir / "epoch_1.pth").is_file()
    log = next(work_dir.glob("*/*.log")).read_text()
    assert "Distributed training: True" in log
    # 8 images over 2 ranks with 2 images each: 2 iterations per epoch, not 4.
    assert "Epoch(train) [1][2/2]" in log


@pytest.mark.slow
def test_train_then_resume_from_cli(synth_split, tmp_path, capsys):
    """`afm train` for one epoch, then `--resume` to two: the run continues at
    epoch 2 from the saved state instead of starting over. The terminal shows the epoch's
    losses and a summary; mmengine's environment dump only with --verbose (always in the log)."""
    from afmcli.cli import main

    work_dir = tmp_path / "wd"
    base = ["train", str(TINY), "--work-dir", str(work_dir), "--data-root", str(synth_split.root),
            "--cfg-options", "train_dataloader.batch_size=4", *NO_VAL]
    main(base + ["--cfg-options", "train_cfg.max_epochs=1"])
    assert (work_dir / "epoch_1.pth").is_file()
    shown = capsys.readouterr()
    assert "training: epoch 1, mean losses" in shown.err and "done: epoch 1, iteration 2; checkpoints in" in shown.out
    assert "System environment" not in shown.out + shown.err and "Epoch(train)" not in shown.out + shown.err
    main(base + ["--resume", "--cfg-options", "train_cfg.max_epochs=2", "--verbose"])
    assert (work_dir / "epoch_2.pth").is_file()
    assert "System environment" in capsys.readouterr().out
    # each run logs its scalars in its own folder (one process: mmengine's visualizer is per name)
    first, second = sorted(work_dir.glob("*/vis_data/scalars.json"))
    assert '"epoch": 1' in first.read_text() and '"epoch": 2' not in first.read_text()
    assert '"epoch": 2' in second.read_text()
    resumed_log = sorted(work_dir.glob("*/*.log"))[-1].read_text()
    assert "resumed epoch: 1, iter: 2" in resumed_log
    assert "Epoch(train) [2][2/2]" in resumed_log and "Epoch(train) [1]" not in resumed_log


def test_mmengines_key_report_is_one_line_by_part():
    """mmengine's load_state_dict report (its format in 0.10) -> one clause per kind: a module
    with every tensor missing by its name, a partly missing one by its child."""
    from afmcli.engine.quiet import key_mismatch_line

    model_keys = ["neck.lateral_convs.0.conv.weight", "neck.upsample_modules.0.gate", "hd_head.tood_cls.weight",
                  "hd_head.tood_reg.weight", "bbox_head.tood_cls.weight", "backbone.bn1.num_batches_tracked"]
    printed = ("Loads checkpoint by local_loader backend from path: tood.pth\n"
               "The model and loaded state dict do not match exactly\n\n"
               "size mismatch for bbox_head.tood_cls.weight: copying a param with shape torch.Size([80, 4]) from "
               "checkpoint, the shape in current model is torch.Size([10, 4]).\n"
               "unexpected key in source state_dict: neck.fpn_convs.3.conv.weight, neck.fpn_convs.4.conv.weight\n\n"
               "missing keys in source state_dict: neck.upsample_modules.0.gate, hd_head.tood_cls.weight, "
               "hd_head.tood_reg.weight\n")
    assert key_mismatch_line(printed, model_keys) == (
        "3 tensors of this model are not in it and keep their initialisation (neck.upsample_modules, hd_head); "
        "2 of its tensors have no place in this model (neck.fpn_convs); "
        "1 have another shape here and were not loaded (bbox_head.tood_cls.weight)")
    assert key_mismatch_line("Loads checkpoint by local_loader backend from path: x.pth\n", model_keys) is None


def test_load_from_a_tood_into_afmnet_says_so_in_one_line(synth_split, tmp_path, capsys):
    """The terminal gets one line for the ~90 tensors TOOD lacks; mmengine's list is in the log."""
    from afmcli.cli import main
    from test_infer_e2e import save_tiny_checkpoint

    tood = save_tiny_checkpoint(tmp_path / "tood.pth", config=TINY)
    work_dir = tmp_path / "wd"
    main(["train", str(TINY.parent / "afmnet_tiny_synth.py"), "--work-dir", str(work_dir), "--data-root",
          str(synth_split.root), "--cfg-options", f"load_from={tood}", "train_cfg.max_epochs=1",
          "train_dataloader.batch_size=4", *NO_VAL])
    shown = capsys.readouterr()
    [line] = [line for line in shown.err.splitlines() if "load_from" in line]
    assert re.fullmatch(r"afm: warning: load_from .*tood\.pth: \d+ tensors of this model are not in it and keep "
                        r"their initialisation \(neck\.upsample_modules, p2_neck, mask_estimator, affm, irfi, \.\.\.\) "
                        r"\(each key: the log in the work dir\)", line)
    assert "missing keys" not in shown.out + shown.err and "Loads checkpoint by" not in shown.out + shown.err
    assert "missing keys in source state_dict: neck.upsample_modules.0.gate" in \
        sorted(work_dir.glob("*/*.log"))[-1].read_text()
