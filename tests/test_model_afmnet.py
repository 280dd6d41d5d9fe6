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
from afmcli.models.afmnet import hd_state_from_main, merge_by_role, merge_detections
from afmcli.models.windows import Windows

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


def scalars(losses):
    return {k: float((v if torch.is_tensor(v) else sum(v)).detach()) for k, v in losses.items()}


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
        before, after = scalars(before), scalars(after)
        assert set(before) != set(after) or any(before[k] != pytest.approx(after[k], rel=1e-6) for k in before)
    # AFFM changes the HD head's input from the whole map to windows, IRFI its values
    assert scalars(results[3])['hd_loss_cls'] != pytest.approx(scalars(results[4])['hd_loss_cls'], rel=1e-6)
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


def test_hd_head_runs_all_windows_in_one_deform_sampling_call():
    """4 images x 13 windows = 52 crops: mmcv's deform_conv2d (in TOODHead) refuses a batch
    above its im2col_step (32) that is not a multiple of it; the HD head sets the step to the
    batch, and the result equals one call per crop."""
    model = build(tiny_model_cfg(affm=dict(type='AFFM', topk=13, window=8)))
    model.eval()
    crops = torch.randn(52, 64, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        together = model.hd_head((crops,))
        single = [model.hd_head((crop[None],)) for crop in crops]
    for i, part in enumerate(together):
        assert part[0].shape[0] == 52
        torch.testing.assert_close(part[0], torch.cat([s[i][0] for s in single]), rtol=1e-5, atol=1e-5)
    inputs, samples = make_batch(h=256, w=256, n=4)
    model.train()
    losses = model.loss(inputs, samples)  # 4 x 13 windows through the real loss path
    assert all(torch.isfinite(torch.as_tensor(v)) for v in scalars(losses).values())


def one_window(margin, rows):
    return lambda score, valid_hw, training=False: Windows(torch.tensor(rows), torch.ones(len(rows), dtype=torch.bool),
                                                           len(rows), (24, 24), margin)


def fake_hd_forward(cells):
    """An HD head forward that scores the given (crop, class, y, x, box in crop pixels) cells."""
    def forward(feats):
        m, _, h, w = feats[0].shape
        cls, boxes = torch.zeros(m, 10, h, w), torch.zeros(m, 4, h, w)
        for crop, label, y, x, box in cells:
            cls[crop, label, y, x], boxes[crop, :, y, x] = 0.9 - 0.1 * label, torch.tensor(box) / 4
        return [cls], [boxes]
    return forward


def test_hd_min_bbox_size_counts_original_pixels(monkeypatch):
    """The HD head's min_bbox_size=3 applies after rescaling, as mmdet's heads do: with the
    image resized 2x, a 5x5 box in network pixels is 2.5x2.5 original pixels (dropped) and
    an 8x8 one is 4x4 (kept), in original coordinates."""
    model = build(tiny_model_cfg(hd_merge_warmup=0))  # the HD head's boxes merged from the start
    model.eval()
    model.bbox_head.test_cfg.score_thr = 2.0  # silence the main head: HD detections only
    inputs, samples = make_batch(n=1)
    samples[0].set_metainfo(dict(scale_factor=(2.0, 2.0), ori_shape=(128, 96)))
    margin = model.affm.margin
    monkeypatch.setattr(model.affm, 'mine', one_window(margin, [[0, 0, 0, 24, 24]]))
    monkeypatch.setattr(model.hd_head, 'forward', fake_hd_forward([(0, 0, 12, 10, [40., 40, 45, 45]),
                                                                    (0, 1, 12, 16, [60., 40, 68, 48])]))
    with torch.no_grad():
        pred = model.predict(inputs, samples)[0].pred_instances
    assert pred.labels.tolist() == [1]
    origin = -margin * 4  # crop pixel 0 is image pixel -8
    assert pred.bboxes.tolist() == [[(60 + origin) / 2, (40 + origin) / 2, (68 + origin) / 2, (48 + origin) / 2]]


def test_hd_predictions_in_the_window_margin_are_dropped(monkeypatch):
    model = build(tiny_model_cfg(hd_merge_warmup=0))
    model.eval()
    model.bbox_head.test_cfg.score_thr = 2.0
    inputs, samples = make_batch(n=1)
    monkeypatch.setattr(model.affm, 'mine', one_window(2, [[0, 4, 4, 28, 28]]))
    # a margin cell (2 cells wide) and a window cell, each with a box around it
    monkeypatch.setattr(model.hd_head, 'forward', fake_hd_forward(
        [(0, 0, y, x, [4 * x - 8., 4 * y - 8, 4 * x + 8, 4 * y + 8]) for y, x in ((1, 10), (10, 10))]))
    with torch.no_grad():
        pred = model.predict(inputs, samples)[0].pred_instances
    assert len(pred) == 1  # only the window cell's box; crop origin (4 - 2) cells = 8 px
    assert pred.bboxes.tolist() == [[8 + 4 * 8, 8 + 4 * 8, 8 + 4 * 12, 8 + 4 * 12]]


def hd_loss_of(model, monkeypatch, cls, boxes, windows, gt, hw=(16, 16)):
    monkeypatch.setattr(model.hd_head, 'forward', lambda feats: ([cls], [boxes]))
    scores, bboxes, flat, valid = model._hd_cells(cls, windows, hw, [hw])
    priors = model.hd_head.prior_generator.single_level_grid_priors(hw, 0, device='cpu')[flat]
    return scalars(model.hd_head.loss_by_cells(scores, bboxes, priors, valid, gt))


@pytest.mark.parametrize('epoch', [0, 5])  # ATSS, then TaskAligned
def test_hd_loss_reads_the_window_cores_once_per_image(epoch, monkeypatch):
    """Targets are assigned per image over the windows' core cells: predictions in a crop's
    context margin change nothing; inside a core they do; and a window mined twice (its
    cells owned once) leaves the loss as it was."""
    model = build(tiny_model_cfg())
    model.set_epoch(epoch)
    windows = Windows(torch.tensor([[0, 0, 0, 8, 8], [0, 8, 0, 16, 8]]), torch.ones(2, dtype=torch.bool), 2, (8, 8), 2)
    gt = [InstanceData(bboxes=torch.tensor([[6., 6, 16, 18], [40., 8, 52, 20]]), labels=torch.tensor([2, 4]))]
    gen = torch.Generator().manual_seed(0)
    cls = torch.rand(2, 10, 12, 12, generator=gen) * 0.5
    # boxes of about 16 px around each cell (stride units, crop coordinates)
    boxes = torch.rand(2, 4, 12, 12, generator=gen) + torch.tensor([-2., -2, 2, 2]).view(1, 4, 1, 1)
    boxes += torch.stack(torch.meshgrid(torch.arange(12.), torch.arange(12.), indexing='xy')).repeat(1, 2, 1, 1)
    base = hd_loss_of(model, monkeypatch, cls, boxes, windows, gt)
    assert base['loss_bbox'] > 0  # both objects are taught
    margin = torch.ones(12, 12, dtype=torch.bool)
    margin[2:10, 2:10] = False
    cls2, boxes2 = cls.clone(), boxes.clone()
    cls2[..., margin] = torch.rand(2, 10, int(margin.sum()), generator=gen)
    boxes2[..., margin] += 3.0
    assert hd_loss_of(model, monkeypatch, cls2, boxes2, windows, gt) == pytest.approx(base, rel=1e-6)
    cls3 = cls.clone()
    cls3[..., 5, 5] = 0.99
    assert hd_loss_of(model, monkeypatch, cls3, boxes, windows, gt)['loss_cls'] != pytest.approx(base['loss_cls'])
    twice = Windows(windows.rows[[0, 1, 1]], torch.ones(3, dtype=torch.bool), 3, (8, 8), 2)
    assert hd_loss_of(model, monkeypatch, cls[[0, 1, 1]], boxes[[0, 1, 1]], twice, gt) == pytest.approx(base, rel=1e-6)


def test_p2_on_windows_equals_the_whole_map():
    """P2 computed on the crops alone (C2 and P3 crops, CARAFE on the P3 crops) equals the
    whole-map P2 cropped, at the map's edges and for odd and even window origins, and so do
    the gradients."""
    from afmcli.models.necks import P2Feature
    from afmcli.models.windows import crop_windows

    p2 = P2Feature(in_channels=6, out_channels=8, upsample_cfg=dict(
        type='carafe_any', up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1, compressed_channels=4))
    p2.init_weights()
    for conv in (p2.lateral_conv.conv, p2.fpn_conv.conv, p2.upsample.channel_compressor):
        torch.nn.init.normal_(conv.bias)  # biases make the beyond-map cells matter
    torch.nn.init.normal_(p2.upsample.content_encoder.weight, std=0.3)
    gen = torch.Generator().manual_seed(0)
    c2, p3 = torch.randn(2, 6, 14, 18, generator=gen), torch.randn(2, 8, 7, 9, generator=gen)
    rows = torch.tensor([[0, 0, 0, 6, 6], [0, 7, 3, 13, 9], [1, 12, 8, 18, 14], [1, 3, 5, 9, 11]])
    windows = Windows(rows, torch.ones(4, dtype=torch.bool), 2, (6, 6), 2)
    assert p2.runs_on_windows
    weights = torch.randn(4, 8, 10, 10, generator=gen)
    runs = []
    for on_windows in (True, False):
        a, b = c2.clone().requires_grad_(), p3.clone().requires_grad_()
        p2.zero_grad()
        got = p2.on_windows(a, b, windows)[0] if on_windows else crop_windows(p2(a, b), windows)[0]
        (got * weights).sum().backward()
        runs.append((got.detach(), a.grad, b.grad, [t.grad.clone() for t in p2.parameters()]))
    for fast, full in zip(runs[0], runs[1]):
        for x, y in zip(fast if isinstance(fast, list) else [fast], full if isinstance(full, list) else [full]):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert runs[0][0][0, :, :2, :2].abs().sum() == 0  # beyond the map


def test_windowed_and_whole_map_p2_give_the_same_losses(monkeypatch):
    from afmcli.models.necks import P2Feature

    model = build(tiny_model_cfg())
    torch.nn.init.normal_(model.irfi.modulation.weight, std=0.05)
    inputs, samples = make_batch()
    runs = []
    for on_windows in (True, False):
        monkeypatch.setattr(P2Feature, 'runs_on_windows', property(lambda self, v=on_windows: v))
        model.zero_grad()
        losses = model.loss(inputs, samples)
        total(losses).backward()
        runs.append((scalars(losses), [p.grad.clone() for p in model.p2_neck.parameters()]))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5, abs=1e-6)
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_hd_share_tower_shares_the_main_heads_layers_but_not_its_scale():
    shared = build(tiny_model_cfg(hd_share_tower=True))
    own = build(tiny_model_cfg())
    assert shared.hd_head.inter_convs is shared.bbox_head.inter_convs
    assert shared.hd_head.tood_cls is shared.bbox_head.tood_cls
    assert shared.hd_head.scales[0] is not shared.bbox_head.scales[0]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(own) - count(shared) == count(own.hd_head) - 1  # all but the HD head's Scale
    inputs, samples = make_batch()
    total(shared.loss(inputs, samples)).backward()
    assert shared.hd_head.scales[0].scale.grad is not None
    with pytest.raises(ValueError, match='same stacked_convs'):
        hd = dict(tiny_model_cfg().hd_head, stacked_convs=1)
        build(tiny_model_cfg(hd_share_tower=True, hd_head=hd))


def test_hd_loss_weight_and_test_heads():
    inputs, samples = make_batch()
    base = scalars(build(tiny_model_cfg()).loss(inputs, samples))
    heavy = scalars(build(tiny_model_cfg(hd_loss_weight=3.0)).loss(inputs, samples))
    assert heavy['hd_loss_cls'] == pytest.approx(3 * base['hd_loss_cls'], rel=1e-5)
    assert heavy['loss_cls'] == pytest.approx(base['loss_cls'], rel=1e-6)
    preds = {}
    for heads in ('both', 'main', 'hd'):
        model = build(tiny_model_cfg(test_heads=heads))
        model.eval()
        with torch.no_grad():
            preds[heads] = model.predict(inputs, samples)[0].pred_instances
    assert len(preds['both']) <= len(preds['main']) + len(preds['hd']) and len(preds['hd']) > 0
    with pytest.raises(ValueError, match="test_heads 'hd' is not one of both, main"):
        build(tiny_model_cfg(test_heads='hd', hd_head=None, p2_neck=None, affm=None, irfi=None, mask_estimator=None))


def test_merge_by_role_takes_small_boxes_in_windows_from_the_hd_head():
    cores = torch.tensor([[0., 0, 100, 100]])
    main = InstanceData(bboxes=torch.tensor([[10., 10, 20, 20],     # small, in the core: HD's role
                                             [150., 10, 160, 20],   # small, outside: kept
                                             [0., 0, 60, 60]]),     # large, in the core: kept
                        scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.tensor([1, 1, 1]))
    hd = InstanceData(bboxes=torch.tensor([[11., 11, 21, 21], [0., 0, 50, 50]]),  # small kept, large dropped
                      scores=torch.tensor([0.5, 0.95]), labels=torch.tensor([1, 1]))
    res = merge_by_role(main, hd, cores, iou_threshold=0.6, max_per_img=500)
    assert res.scores.tolist() == pytest.approx([0.8, 0.7, 0.5])
    plain = merge_detections([main, hd], iou_threshold=0.6, max_per_img=500)
    # plain NMS: the HD head's small box loses to the main head's, the main head's large box to the HD head's
    assert plain.scores.tolist() == pytest.approx([0.95, 0.9, 0.8])
    model = build(tiny_model_cfg(merge_cfg=dict(iou_threshold=0.6, max_per_img=300, by_role=True)))
    model.eval()
    inputs, samples = make_batch()
    with torch.no_grad():
        assert len(model.predict(inputs, samples)[0].pred_instances) > 0


def packed_masks(model, samples, inputs):
    """The masks the training pipeline packs (RenderObjectMasks), drawn on the host."""
    from mmengine.structures import PixelData

    with torch.no_grad():
        logits = model.mask_estimator(model._features(inputs)[1][:2])
    for sample in samples:
        masks = model._render_masks(sample, [t.shape[-2:] for t in logits], (8, 16))
        sample.gt_mask_s, sample.gt_mask_l = (PixelData(data=m[None]) for m in masks)
    return samples


@pytest.mark.parametrize('epoch,syncs', [
    # mmdet's loss code: FocalLoss's one_hot (2), loss_by_feat_single's nonzero, the
    # centerness NaN assert, GIoULoss's any(weight > 0); and our two loss normalisers
    (0, {'aten._local_scalar_dense.default': 6, 'aten.nonzero.default': 1}),
    # QualityFocalLoss's and loss_by_feat_single's nonzero, GIoULoss's any, the normalisers
    (5, {'aten._local_scalar_dense.default': 3, 'aten.nonzero.default': 2})])
def test_the_hd_head_training_path_syncs_only_in_mmdets_losses(epoch, syncs):
    """Windows, crops, P2, IRFI, the HD head, its per-image targets and losses of a batch: the
    host reads device values only inside mmdet's loss functions and for the two loss
    normalisers (`.item()`), a constant per iteration; the old per-window path had hundreds."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('bench_train', 'bench/bench_train.py')
    bench_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_train)
    model = build(tiny_model_cfg())
    model.set_epoch(epoch)
    inputs, samples = make_batch(h=384, w=512)
    samples = packed_masks(model, samples, inputs)
    out = model._branches(inputs, samples, training=True)
    with bench_train.op_counter() as counts:
        crops, windows, hw, valid_hw = model._hd_input(out, samples, training=True)
        scores, boxes, flat, valid = model._hd_cells(crops, windows, hw, valid_hw)
        priors = model.hd_head.prior_generator.single_level_grid_priors(hw, 0, device='cpu')[flat]
        losses = model.hd_head.loss_by_cells(scores, boxes, priors, valid, [s.gt_instances for s in samples])
        sum(losses.values()).backward()
    assert windows.k == 4 and dict(counts.sync_names) == syncs
