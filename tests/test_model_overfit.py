"""The tiny AFMNet learns: it overfits 8 synthetic images to AP50 >= 50 (~2 min on 2 cores)."""

import pytest

from afmcli.data.convert import convert_split
from afmcli.data.synth import write_synth_split
from afmcli.engine.train import train

EPOCHS = 40  # 8 images, batch 4: 80 iterations


@pytest.mark.slow
def test_tiny_afmnet_overfits_eight_synthetic_images(tmp_path):
    write_synth_split(tmp_path / 'raw', 'train', 8, 3, 512, 384, workers=1)
    convert_split(tmp_path / 'raw', tmp_path / 'Datasets', 'train')
    ann = 'labels/annotations/train_labels.json'
    runner = train('configs/AFM/afmnet_tiny_synth.py', work_dir=tmp_path / 'work',
                   data_root=str(tmp_path / 'Datasets'), progress=False, cfg_options=[
                       f'train_cfg.max_epochs={EPOCHS}', f'train_cfg.val_interval={EPOCHS}',
                       f'param_scheduler.1.end={EPOCHS}',
                       f'val_dataloader.dataset.ann_file={ann}',
                       'val_dataloader.dataset.data_prefix.img=images/train/',
                       f'val_evaluator.ann_file={tmp_path}/Datasets/{ann}',
                       'default_hooks.checkpoint.interval=1000',
                       'default_hooks.checkpoint.save_best=None'])
    metrics = runner.val()
    assert metrics['coco/AP50'] >= 50, metrics
    assert metrics['visdrone/AP50'] >= 50, metrics
