"""Every config loads (custom_imports included) and builds; the main one carries the published settings."""

from pathlib import Path

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from afmcli.engine.train import leaf_datasets

register_all_modules()
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs' / 'AFM').rglob('*.py'))


def load(path):
    return Config.fromfile(str(ROOT / path))


def test_all_expected_configs_exist():
    expected = {'configs/AFM/AFMNet-tood_r50_k13.py', 'configs/AFM/tood_r50_visdrone.py',
                'configs/AFM/AFMNet-tood_r50_k13_sliced.py', 'configs/AFM/afmnet_tiny_synth.py',
                'configs/AFM/tood_tiny_synth.py'} | {
        f'configs/AFM/ablation/tood_r50_{name}.py' for name in ('cfpn', 'cfpn_hd', 'cfpn_hd_fpd', 'cfpn_hd_fpd_affm')}
    assert expected <= set(CONFIGS)


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds(path):
    cfg = load(path)
    cfg.model.backbone.init_cfg = None  # no download
    model = MODELS.build(cfg.model)
    assert model.bbox_head.num_classes == 10
    assert cfg.data_root == 'Datasets/'
    assert all(d.data_root == cfg.data_root for d in leaf_datasets(cfg.train_dataloader.dataset))
    assert cfg.val_evaluator.type == 'VisDroneMetric'
    assert cfg.val_evaluator.ann_file.startswith(cfg.data_root)


def parts(path):
    model = load(path).model
    return {key for key in ('p2_neck', 'mask_estimator', 'affm', 'irfi', 'hd_head') if model.get(key)}


def test_ablation_chain_adds_one_part_at_a_time():
    chain = ['ablation/tood_r50_cfpn', 'ablation/tood_r50_cfpn_hd', 'ablation/tood_r50_cfpn_hd_fpd',
             'ablation/tood_r50_cfpn_hd_fpd_affm', 'AFMNet-tood_r50_k13']
    found = [parts(f'configs/AFM/{name}.py') for name in chain]
    assert found[0] == set()
    assert [sorted(b - a) for a, b in zip(found, found[1:])] == [
        ['hd_head', 'p2_neck'], ['mask_estimator'], ['affm'], ['irfi']]
    assert parts('configs/AFM/ablation/tood_r50_cfpn_fpd.py') == {'mask_estimator'}  # CFPN + FPD, no HD head
    # CFPN in FPN's topology (TOOD's extra convs), so a TOOD checkpoint starts it; FPN_CARAFE an option
    cfpn = load('configs/AFM/ablation/tood_r50_cfpn.py').model.neck
    assert (cfpn.type, cfpn.add_extra_convs, cfpn.upsample_cfg.type) == ('CFPN', 'on_output', 'carafe_nearest')
    assert load('configs/AFM/AFMNet-tood_r50_k13_fpn_carafe.py').model.neck.type == 'CARAFEFPN'
    tood = load('configs/AFM/tood_r50_visdrone.py').model.neck
    assert (tood.type, tood.add_extra_convs) == ('FPN', 'on_output')


def test_main_config_has_the_published_settings():
    cfg = load('configs/AFM/AFMNet-tood_r50_k13.py')
    m = cfg.model
    assert m.type == 'AFMNet' and m.backbone.depth == 50 and m.backbone.out_indices == (0, 1, 2, 3)
    assert m.backbone.frozen_stages == 1 and m.backbone.norm_eval
    assert m.neck.in_channels == [256, 512, 1024, 2048] and m.neck.start_level == 1 and m.neck.num_outs == 5
    assert {k: m.neck.upsample_cfg[k] for k in ('up_kernel', 'up_group', 'encoder_kernel',
                                                 'encoder_dilation', 'compressed_channels')} == dict(
        up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1, compressed_channels=64)
    assert m.bbox_head.stacked_convs == 6 and m.bbox_head.anchor_generator.strides == [8, 16, 32, 64, 128]
    assert m.bbox_head.loss_bbox == dict(type='GIoULoss', loss_weight=2.0)
    assert m.mask_estimator.type == 'MASK_EST' and m.mask_estimator.model_num == 2
    assert m.mask_estimator.in_channels == 256 and m.mask_estimator.out_channels == 1
    assert m.hd_head.anchor_generator.strides == [4] and m.affm.topk == 13
    assert m.hd_head.test_cfg.min_bbox_size == 3
    t = m.train_cfg
    assert (t.initial_epoch, t.initial_assigner.topk, t.assigner.topk, t.alpha, t.beta) == (4, 4, 3, 1, 7)
    assert (m.test_cfg.score_thr, m.test_cfg.nms.iou_threshold, m.test_cfg.max_per_img) == (0.01, 0.6, 500)
    assert m.merge_cfg == dict(iou_threshold=0.6, max_per_img=500)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 0.02, 0.9, 1e-4)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.by_epoch) == ('LinearLR', 500, False)
    assert steps.milestones == [16, 22] and cfg.train_cfg.max_epochs == 36
    assert cfg.train_dataloader.batch_size == 4
    pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert pipeline['Resize'].scale == (1333, 800) and pipeline['Resize'].keep_ratio
    types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert types.index('RandomFlip') < types.index('RenderObjectMasks')  # masks flip with the image
    assert types[-1] == 'PackAFMInputs'
    assert cfg.default_hooks.checkpoint.save_best == 'coco/AP50'
    assert set(cfg.custom_imports.imports) == {'afmcli.models', 'afmcli.data.transforms',
                                               'afmcli.evaluation.metric'}
    assert cfg.load_from.endswith('.pth')


def test_sliced_config_trains_on_the_sliced_split_and_validates_on_full_images():
    cfg = load('configs/AFM/AFMNet-tood_r50_k13_sliced.py')
    assert cfg.train_dataloader.dataset.ann_file == 'labels/annotations/train_sliced_labels.json'
    assert cfg.train_dataloader.dataset.data_prefix.img == 'images/train_sliced/'
    assert cfg.val_dataloader.dataset.ann_file == 'labels/annotations/val_labels.json'
    mixed = load('configs/AFM/AFMNet-tood_r50_k13_sliced_full.py').train_dataloader.dataset
    assert mixed.type == 'ConcatDataset'
    assert [(d.ann_file, d.data_prefix.img) for d in mixed.datasets] == [
        ('labels/annotations/train_sliced_labels.json', 'images/train_sliced/'),
        ('labels/annotations/train_labels.json', 'images/train/')]
    assert mixed.datasets[0].pipeline == mixed.datasets[1].pipeline == cfg.train_dataloader.dataset.pipeline


def test_r50_configs_seed_3407_as_the_authors_train_py():
    for path in CONFIGS:
        cfg = load(path)
        assert cfg.randomness.seed == (0 if 'tiny' in path else 3407), path
