"""The AFMNet detector on the tiny config: losses, switches, HD-head area, epochs, weights."""

import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine import MessageHub
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData

import afmcli.models  # noqa: F401  (registers the modules)
from afmcli.models.afmnet import hd_state_from_main, merge_detections

register_all_modules()
TINY = 'configs/AFM/afmnet_tiny_synth.py'
LOSS_KEYS = {'loss_cls', 'loss_bbox', 'loss_mask_s', 'loss_mask_l', 'hd_loss_cls', 'hd_loss_bbox'}


def tiny_model_cfg(**changes):
    cfg = Config.fromfile(TINY, import_custom_modules=False).model
    for key, value in changes.items():  # replace, not merge (ConfigDict.update merges)
        cfg[key] = value
    return cfg


def build(cfg, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model


def make_batch(h=256, w=192, n=2):
    """Images and samples with small and large boxes (tiny config's normalised inputs)."""
    gen = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                        pad_shape=(h, w), batch_input_shape=(h, w)))
        xy = torch.rand(12, 2, generator=gen) * torch.tensor([w - 60, h - 60])
        wh = 6 + torch.rand(12, 2, generator=gen) * 12
        wh[:2] = 45  # two large objects (area >= 32x32)
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                      labels=torch.randint(0, 10, (12,), generator=gen))
        samples.append(s)
    return torch.randn(n, 3, h, w, generator=gen), samples


def total(losses):
    return sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())


@pytest.fixture(autouse=True)
def epoch_zero():
    MessageHub.get_current_instance().update_info('epoch', 0)


@pytest.mark.parametrize('epoch', [0, 5])
def test_tiny_forward_backward_gives_every_loss_finite(epoch):
    model = build(tiny_model_cfg())
    model.set_epoch(epoch)
    inputs, samples = make_batch()
    losses = model.loss(inputs, samples)
    assert set(losses) == LOSS_KEYS
    for name, value in losses.items():
        for v in (value if isinstance(value, list) else [value]):
            assert torch.isfinite(v), name
    total(losses).backward()
    for part in ('backbone', 'neck', 'p2_neck', 'mask_estimator', 'irfi', 'hd_head', 'bbox_head'):
        grads = [p.grad for p in getattr(model, part).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part
    # set_epoch reaches both heads: ATSS (initial) before epoch 2, TaskAligned after
    assert model.bbox_head.epoch == model.hd_head.epoch == epoch


def test_predict_merges_heads_and_caps_detections():
    model = build(tiny_model_cfg())
    model.eval()
    inputs, samples = make_batch()
    with torch.no_grad():
        out = model.predict(inputs, samples)
    pred = out[0].pred_instances
    assert 0 < len(pred) <= 300 and set(pred.keys()) == {'bboxes', 'scores', 'labels'}
    assert (pred.scores[:-1] >= pred.scores[1:]).all()  # NMS output is sorted


def test_merge_detections_is_class_aware_and_capped():
    a = InstanceData(bboxes=torch.tensor([[0., 0, 10, 10], [0, 0, 10, 10]]),
                     scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([1, 2]))
    b = InstanceData(bboxes=torch.tensor([[0., 0, 10, 11], [50, 50, 60, 60]]),
                     scores=torch.tensor([0.95, 0.1]), labels=torch.tensor([1, 1]))
    res = merge_detections([a, b], iou_threshold=0.6, max_per_img=500)
    assert res.scores.tolist() == pytest.approx([0.95, 0.8, 0.1])  # 0.9 (same class) suppressed
    assert len(merge_detections([a, b], iou_threshold=0.6, max_per_img=2)) == 2


ABLATION_CHAIN = [  # each step adds one part, as configs/AFM/ablation/*
    dict(p2_neck=None, hd_head=None, mask_estimator=None, affm=None, irfi=None),
    dict(mask_estimator=None, affm=None, irfi=None),
    dict(affm=None, irfi=None),
    dict(irfi=None),
    dict(),
]


def test_each_ablation_switch_changes_the_computation():
    inputs, samples = make_batch()
    full = build(tiny_model_cfg())
    torch.nn.init.normal_(full.irfi.modulation.weight, std=0.05)  # IRFI starts as identity
    state = full.state_dict()
    results = []
    for changes in ABLATION_CHAIN:
        model = build(tiny_model_cfg(**changes))
        model.load_state_dict(state, strict=False)
        model.eval()
        with torch.no_grad():
            results.append(model.loss(inputs, samples))
    for before, after in zip(results, results[1:]):
        differs = set(before) != set(after) or any(
            not torch.allclose(torch.as_tensor(before[k][0] if isinstance(before[k], list) else before[k]),
                               torch.as_tensor(after[k][0] if isinstance(after[k], list) else after[k]))
            for k in before)
        assert differs
    # AFFM changes the HD head's input from the whole map to windows, IRFI its values
    assert not torch.allclose(results[3]['hd_loss_cls'][0], results[4]['hd_loss_cls'][0])
    # the neck switch: FPN instead of CFPN
    fpn = build(tiny_model_cfg(neck=dict(type='FPN', in_channels=[16, 32, 64, 128], out_channels=64,
                                         start_level=1, add_extra_convs='on_output', num_outs=5)))
    assert type(fpn.neck).__name__ == 'FPN'
    assert set(fpn.loss(inputs, samples)) == LOSS_KEYS


def hd_input_shapes(model, inputs, samples):
    shapes = []
    handle = model.hd_head.register_forward_pre_hook(lambda m, args: shapes.append(args[0][0].shape))
    model.loss(inputs, samples)
    handle.remove()
    return shapes[0]


@pytest.mark.parametrize('hw,window,k,fraction', [
    ((384, 512), 24, 4, 4 * 24 * 24 / (96 * 128)),  # 0.1875 of the dense stride-4 map
    ((64, 512), 24, 4, 4 * 16 * 24 / (16 * 128)),   # window clipped to the 16-cell-high map
    ((96, 128), 24, 4, 1.0),  # 4 windows would exceed the 24x32 map: dense instead
])
def test_hd_head_computes_the_claimed_fraction(hw, window, k, fraction):
    model = build(tiny_model_cfg(affm=dict(type='AFFM', topk=k, window=window, margin=0)))
    inputs, samples = make_batch(*hw)
    n, c, wh, ww = hd_input_shapes(model, inputs, samples)
    assert c == 64
    assert n // 2 * wh * ww / (hw[0] // 4 * hw[1] // 4) == pytest.approx(fraction)
    # without AFFM, the HD head is dense: one window per image, the whole map
    dense = build(tiny_model_cfg(affm=None, irfi=None))
    assert tuple(hd_input_shapes(dense, inputs, samples)) == (2, 64, hw[0] // 4, hw[1] // 4)


def test_masks_come_from_samples_when_packed_else_from_boxes():
    model = build(tiny_model_cfg())
    inputs, samples = make_batch()
    with torch.no_grad():
        logits = model.mask_estimator(model._features(inputs)[1][:2])
    rendered = model._mask_targets(samples, logits)
    assert rendered[0].sum() > 0 and rendered[1].sum() > 0  # 10 small, 2 large boxes per image
    # the boxes render into the right map: large boxes only in the stride-16 mask
    small_only = copy.deepcopy(samples)
    for s in small_only:
        s.gt_instances = s.gt_instances[2:]
    assert model._mask_targets(small_only, logits)[1].sum() == 0
    # packed masks (from the pipeline) take precedence over rendering
    packed = copy.deepcopy(samples)
    for s in packed:
        s.gt_mask_s = PixelData(data=torch.ones(1, 32, 24))
        s.gt_mask_l = PixelData(data=torch.zeros(1, 16, 12))
    targets = model._mask_targets(packed, logits)
    assert targets[0].sum() == 2 * 32 * 24 and targets[1].sum() == 0


def test_hd_state_from_main_copies_matching_shapes_only():
    main = {'bbox_head.tood_cls.weight': torch.ones(80, 4), 'bbox_head.inter_convs.0.w': torch.ones(3),
            'bbox_head.scales.0.scale': torch.tensor(2.0), 'bbox_head.scales.1.scale': torch.tensor(3.0)}
    hd = {'tood_cls.weight': torch.zeros(10, 4), 'inter_convs.0.w': torch.zeros(3),
          'scales.0.scale': torch.tensor(1.0)}
    state = dict(main)
    assert sorted(hd_state_from_main(state, '', hd)) == ['hd_head.inter_convs.0.w', 'hd_head.scales.0.scale']
    assert state['hd_head.scales.0.scale'] == 2.0
    assert hd_state_from_main(state, '', hd) == []  # a checkpoint with an HD head is left alone


@pytest.mark.slow
def test_coco_tood_checkpoint_loads_into_afmnet(tmp_path):
    """load_from an mmdet COCO TOOD R50: every backbone and head weight arrives (HD head too)."""
    from mmengine.runner.checkpoint import load_checkpoint

    import mmdet

    tood_cfg = Config.fromfile(f'{mmdet.__path__[0]}/.mim/configs/tood/tood_r50_fpn_1x_coco.py').model
    tood_cfg.backbone.init_cfg = None
    tood = build(tood_cfg, seed=1)
    path = tmp_path / 'tood_coco.pth'
    torch.save({'state_dict': tood.state_dict(), 'meta': {}}, path)
    afm_cfg = Config.fromfile('configs/AFM/AFMNet-tood_r50_k13.py', import_custom_modules=False).model
    afm_cfg.backbone.init_cfg = None
    afm = build(afm_cfg, seed=2)
    load_checkpoint(afm, str(path), map_location='cpu')
    ours, theirs = afm.state_dict(), tood.state_dict()
    for key, value in theirs.items():
        if key.startswith(('backbone.', 'bbox_head.')) and key != 'bbox_head.tood_cls.weight' \
                and key != 'bbox_head.tood_cls.bias':  # 80 COCO classes vs 10
            assert torch.equal(ours[key], value), key
            hd_key = 'hd_head.' + key[len('bbox_head.'):]
            if key.startswith('bbox_head.') and hd_key in ours:
                assert torch.equal(ours[hd_key], value), hd_key
    assert ours['hd_head.tood_cls.weight'].shape == (10, 256, 3, 3)


def test_hd_head_runs_on_more_windows_than_one_deform_conv_call_takes(monkeypatch):
    """4 images x 13 windows = 52 crops: mmcv's deform_conv2d (in TOODHead) refuses a
    batch above 32 that is not a multiple of 32, so the HD head runs in chunks; the
    chunked result equals one call per window."""
    import afmcli.models.afmnet as afmnet

    model = build(tiny_model_cfg(affm=dict(type='AFFM', topk=13, window=8)))
    model.eval()
    crops = torch.randn(52, 64, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        chunked = model._hd_forward(crops)
        monkeypatch.setattr(afmnet, 'HD_CHUNK', 1)
        single = model._hd_forward(crops)
    monkeypatch.undo()
    assert [t[0].shape[0] for t in chunked] == [52, 52]
    for a, b in zip(chunked, single):
        assert torch.allclose(a[0], b[0], atol=1e-5)
    inputs, samples = make_batch(h=256, w=256, n=4)
    model.train()
    losses = model.loss(inputs, samples)  # 4 x 13 windows through the real loss path
    assert torch.isfinite(losses['hd_loss_bbox'] if torch.is_tensor(losses['hd_loss_bbox'])
                          else sum(losses['hd_loss_bbox']))


def test_hd_min_bbox_size_counts_original_pixels(monkeypatch):
    """The HD head's min_bbox_size=3 applies after rescaling, as mmdet's heads do: with the
    image resized 2x, a 5x5 box in network pixels is 2.5x2.5 original pixels (dropped) and
    an 8x8 one is 4x4 (kept), in original coordinates."""
    model = build(tiny_model_cfg())
    model.eval()
    model.bbox_head.test_cfg.score_thr = 2.0  # silence the main head: HD detections only
    inputs, samples = make_batch(n=1)
    samples[0].set_metainfo(dict(scale_factor=(2.0, 2.0), ori_shape=(128, 96)))
    margin = model.affm.margin
    monkeypatch.setattr(model.affm, 'mine', lambda score, valid_hw: torch.tensor([[0, 0, 0, 24, 24]]))

    def hd_forward(crops):
        m, _, h, w = crops.shape
        cls, boxes = torch.zeros(m, 10, h, w), torch.zeros(m, 4, h, w)
        cls[0, 0, 12, 10], boxes[0, :, 12, 10] = 0.9, torch.tensor([40., 40, 45, 45]) / 4
        cls[0, 1, 12, 16], boxes[0, :, 12, 16] = 0.8, torch.tensor([60., 40, 68, 48]) / 4
        return [cls], [boxes]

    monkeypatch.setattr(model, '_hd_forward', hd_forward)
    with torch.no_grad():
        pred = model.predict(inputs, samples)[0].pred_instances
    assert pred.labels.tolist() == [1]
    origin = -margin * 4  # crop pixel 0 is image pixel -8
    assert pred.bboxes.tolist() == [[(60 + origin) / 2, (40 + origin) / 2, (68 + origin) / 2, (48 + origin) / 2]]


def test_hd_predictions_in_the_window_margin_are_dropped(monkeypatch):
    model = build(tiny_model_cfg())
    model.eval()
    model.bbox_head.test_cfg.score_thr = 2.0
    inputs, samples = make_batch(n=1)
    monkeypatch.setattr(model.affm, 'mine', lambda score, valid_hw: torch.tensor([[0, 4, 4, 28, 28]]))

    def hd_forward(crops):
        m, _, h, w = crops.shape
        cls, boxes = torch.zeros(m, 10, h, w), torch.zeros(m, 4, h, w)
        for y, x in ((1, 10), (10, 10)):  # a margin cell (2 cells wide), a window cell
            cls[0, 0, y, x], boxes[0, :, y, x] = 0.9, torch.tensor([x - 2., y - 2, x + 2, y + 2])
        return [cls], [boxes]

    monkeypatch.setattr(model, '_hd_forward', hd_forward)
    with torch.no_grad():
        pred = model.predict(inputs, samples)[0].pred_instances
    assert len(pred) == 1  # only the window cell's box; crop origin (4 - 2) cells = 8 px
    assert pred.bboxes.tolist() == [[8 + 4 * 8, 8 + 4 * 8, 8 + 4 * 12, 8 + 4 * 12]]


@pytest.mark.parametrize('epoch', [0, 5])  # ATSS, then TaskAligned
def test_hd_head_ignores_priors_in_the_window_margin(epoch):
    """Priors in a crop's context margin are neither positives nor negatives: changing the
    predictions there leaves the loss unchanged; changing them inside the window does not.
    mmdet's plain TOODHead (no valid_box) would train the margin as negatives."""
    MessageHub.get_current_instance().update_info('epoch', epoch)
    head = build(tiny_model_cfg()).hd_head
    head.epoch = epoch
    windows = torch.tensor([[0, 0, 0, 8, 8], [0, 8, 0, 16, 8]])
    gt = InstanceData(bboxes=torch.tensor([[6., 6, 16, 18], [40., 8, 52, 20]]), labels=torch.tensor([2, 4]))
    from afmcli.models.windows import instances_to_windows, window_metas
    metas = window_metas(windows, [dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))], 4, margin=2)
    targets = instances_to_windows([gt], windows, 4, margin=2)
    gen = torch.Generator().manual_seed(0)
    cls = torch.rand(2, 10, 12, 12, generator=gen) * 0.5
    boxes = torch.rand(2, 4, 12, 12, generator=gen) + torch.tensor([0., 0, 4, 4]).view(1, 4, 1, 1)

    def loss(c, b):
        out = head.loss_by_feat([c], [b], targets, metas)
        return {k: sum(v).item() if isinstance(v, list) else v.item() for k, v in out.items()}

    base = loss(cls, boxes)
    assert base['loss_bbox'] > 0  # both objects are taught
    margin = torch.ones(12, 12, dtype=torch.bool)
    margin[2:10, 2:10] = False
    cls2, boxes2 = cls.clone(), boxes.clone()
    cls2[..., margin] = torch.rand(2, 10, int(margin.sum()), generator=gen)
    boxes2[..., margin] += 3.0
    assert loss(cls2, boxes2) == pytest.approx(base, rel=1e-6)
    cls3 = cls.clone()
    cls3[..., 5, 5] = 0.99
    assert loss(cls3, boxes)['loss_cls'] != pytest.approx(base['loss_cls'], rel=1e-6)


def test_p2_conv_on_windows_equals_the_whole_map_conv(monkeypatch):
    """P2's 3x3 conv on the window crops and IRFI's context from P2Feature.weighted_mean give
    the whole-map computation's losses and gradients up to float rounding."""
    import afmcli.models.afmnet as afmnet

    model = build(tiny_model_cfg())
    torch.nn.init.normal_(model.irfi.modulation.weight, std=0.05)  # IRFI reads the context
    inputs, samples = make_batch()
    runs = []
    for on_windows in (True, False):
        monkeypatch.setattr(afmnet, 'P2_ON_WINDOWS', on_windows)
        model.zero_grad()
        losses = model.loss(inputs, samples)
        total(losses).backward()
        runs.append(({k: torch.as_tensor(v[0] if isinstance(v, list) else v).item() for k, v in losses.items()},
                     [p.grad.clone() for p in model.p2_neck.parameters()]))
    (fast, fast_grads), (full, full_grads) = runs
    assert fast == pytest.approx(full, rel=1e-5, abs=1e-6)
    for a, b in zip(fast_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_p2_weighted_mean_is_the_mean_of_the_weighted_conv():
    from afmcli.models.necks import P2Feature

    p2 = P2Feature(in_channels=4, out_channels=6, upsample_cfg=dict(type='nearest'))
    p2.init_weights()
    torch.nn.init.normal_(p2.fpn_conv.conv.bias)
    gen = torch.Generator().manual_seed(0)
    merged, weight = torch.randn(2, 6, 7, 9, generator=gen), torch.rand(2, 1, 7, 9, generator=gen)
    want = (p2.fpn_conv(merged) * weight).mean(dim=(2, 3))
    torch.testing.assert_close(p2.weighted_mean(merged, weight), want, rtol=1e-5, atol=1e-6)
    # inside the map, the conv on crops is the whole-map conv (the window at 0, 0 has a
    # margin cell beyond the map, where the conv alone would not be zero)
    from afmcli.models.windows import crop_windows
    windows = torch.tensor([[0, 0, 0, 4, 4], [1, 5, 3, 9, 7]])
    inside = crop_windows(torch.ones(2, 1, 7, 9), windows, 1).expand(-1, 6, -1, -1).bool()
    got, want = p2.conv_windows(merged, windows, 1), crop_windows(p2.fpn_conv(merged), windows, 1)
    torch.testing.assert_close(got[inside], want[inside], rtol=1e-5, atol=1e-6)
