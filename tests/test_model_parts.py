"""Windows, AFFM, IRFI and the FPD mask estimator, each alone, on hand-worked cases."""

import pytest
import torch
from mmengine.structures import InstanceData

import afmcli.models  # noqa: F401  (registers the modules)
from afmcli.models.affm import AFFM
from afmcli.models.irfi import IRFI
from afmcli.models.mask_estimator import MaskEstimator
from afmcli.models.windows import (crop_windows, full_windows, instances_to_windows, mine_windows,
                                   results_from_windows, suppress_margin, window_metas, window_size)


def test_mine_windows_finds_the_two_blobs_in_mass_order():
    score = torch.zeros(1, 1, 40, 60)
    score[0, 0, 5:9, 10:14] = 1.0  # mass 16
    score[0, 0, 30:32, 50:52] = 1.0  # mass 4
    windows = mine_windows(score, [(40, 60)], topk=2, window=8, peak_kernel=9)
    assert windows[:, 0].tolist() == [0, 0]  # rows (image, x0, y0, x1, y1)
    for (_, x0, y0, x1, y1), (by, bx) in zip(windows.tolist(), [(5, 10), (30, 50)]):
        assert (x1 - x0, y1 - y0) == (8, 8)
        assert x0 <= bx and bx + 2 <= x1 and y0 <= by and by + 2 <= y1  # blob inside
    # the larger blob is entirely inside its window
    _, x0, y0, x1, y1 = windows[0].tolist()
    assert score[0, 0, y0:y1, x0:x1].sum() == 16


def test_mine_windows_clips_to_map_and_to_valid_area():
    score = torch.zeros(2, 1, 10, 12)
    score[0, 0, 8:, 10:] = 1.0  # mass in the bottom-right corner
    score[1, 0, 4:6, 5:7] = 1.0  # ... of the valid area
    score[1, 0, 8:, 10:] = 5.0  # padding: never mined
    windows = mine_windows(score, [(10, 12), (6, 7)], topk=1, window=16, peak_kernel=17)
    assert windows[0].tolist() == [0, 0, 0, 12, 10]  # window larger than map: the map
    windows = mine_windows(score, [(10, 12), (6, 7)], topk=1, window=4, peak_kernel=5)
    assert windows.tolist() == [[0, 8, 6, 12, 10],
                                [1, 3, 2, 7, 6]]  # kept inside the 6x7 valid cells
    assert window_size((10, 12), 16) == (10, 12)


def test_mine_windows_peaks_suppress_neighbours():
    score = torch.zeros(1, 1, 20, 20)
    score[0, 0, 8:12, 8:12] = 1.0
    windows = mine_windows(score, [(20, 20)], topk=2, window=4, peak_kernel=5)
    (_, ax, ay, _, _), (_, bx, by, _, _) = windows.tolist()
    assert max(abs(ax - bx), abs(ay - by)) > 2  # the second window is not a shifted copy


def test_mine_windows_never_repeats_a_window_of_a_small_image_in_a_large_batch():
    """Image 1 (valid 6x5 cells) is smaller than a window (8x8) in a batch padded to 20x24:
    only one window position is allowed, so it gets one window, not k copies of it
    (which would teach the same objects k times). Image 0 gets its k distinct windows."""
    score = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    windows = mine_windows(score, [(20, 24), (6, 5)], topk=3, window=8, peak_kernel=9)
    assert windows[:, 0].tolist() == [0, 0, 0, 1]
    assert windows[3].tolist() == [1, 0, 0, 8, 8]
    assert len({tuple(w) for w in windows.tolist()}) == len(windows)
    # valid area one cell wider than a window: two positions, two windows
    windows = mine_windows(score, [(20, 24), (8, 9)], topk=3, window=8, peak_kernel=9)
    assert sorted(w[1:3] for w in windows.tolist() if w[0] == 1) == [[0, 0], [1, 0]]


def test_crop_windows_with_margin_and_area_fraction():
    feat = torch.arange(2 * 3 * 8 * 10, dtype=torch.float).view(2, 3, 8, 10)
    windows = torch.tensor([[0, 0, 0, 4, 4], [0, 6, 4, 10, 8], [1, 2, 2, 6, 6], [1, 0, 4, 4, 8]])
    crops = crop_windows(feat, windows)
    assert crops.shape == (4, 3, 4, 4)
    assert torch.equal(crops[1], feat[0, :, 4:8, 6:10])
    assert torch.equal(crops[2], feat[1, :, 2:6, 2:6])
    assert full_windows(2, (8, 10)).tolist() == [[0, 0, 0, 10, 8], [1, 0, 0, 10, 8]]
    crops = crop_windows(feat, windows, margin=1)  # one cell of context each side
    assert crops.shape == (4, 3, 6, 6)
    assert torch.equal(crops[2], feat[1, :, 1:7, 1:7])
    assert torch.equal(crops[0, :, 1:, 1:], feat[0, :, :5, :5])  # zeros beyond the map
    assert crops[0, :, 0].abs().sum() == 0 and crops[0, :, :, 0].abs().sum() == 0


def test_instances_to_windows_takes_boxes_by_centre_and_keeps_them_whole():
    gt = InstanceData(bboxes=torch.tensor([[10., 10, 20, 20],   # centre (15, 15): window 0
                                           [28., 10, 40, 20],   # centre (34, 15): window 1 only
                                           [24., 24, 34, 30]]),  # centre (29, 27): both
                      labels=torch.tensor([1, 2, 3]))
    windows = torch.tensor([[0, 0, 0, 8, 8], [0, 6, 0, 14, 8]])  # cells of 4 px: 32x32 px
    w0, w1 = instances_to_windows([gt], windows, stride=4)
    assert w0.labels.tolist() == [1, 3]
    assert w0.bboxes.tolist() == [[10, 10, 20, 20], [24, 24, 34, 30]]  # not clipped at 32
    assert w1.labels.tolist() == [2, 3]  # window 1 starts at x = 24 px
    assert w1.bboxes.tolist() == [[4, 10, 16, 20], [0, 24, 10, 30]]
    # with a 2-cell (8 px) margin the crop starts 8 px earlier; membership is unchanged
    m0, m1 = instances_to_windows([gt], windows, stride=4, margin=2)
    assert m0.labels.tolist() == [1, 3] and m1.labels.tolist() == [2, 3]
    assert m1.bboxes.tolist() == [[12, 18, 24, 28], [8, 32, 18, 38]]


def test_window_metas_and_results_round_trip():
    windows = torch.tensor([[0, 0, 0, 8, 8], [0, 20, 10, 28, 18]])
    meta = dict(img_shape=(60, 100), scale_factor=(2.0, 0.5))
    metas = window_metas(windows, [meta], stride=4)
    assert metas[0]['img_shape'] == (32, 32) and metas[0]['pad_shape'] == (32, 32)
    assert metas[0]['valid_box'] == (0, 0, 32, 32) and metas[0]['scale_factor'] == (2.0, 0.5)
    metas = window_metas(windows, [meta], stride=4, margin=2)
    assert metas[1]['pad_shape'] == (48, 48) and metas[1]['valid_box'] == (8, 8, 40, 40)
    per_window = [InstanceData(bboxes=torch.tensor([[1., 2, 3, 4]]), scores=torch.tensor([0.9]),
                               labels=torch.tensor([0])),
                  InstanceData(bboxes=torch.tensor([[1., 2, 30, 30]]), scores=torch.tensor([0.8]),
                               labels=torch.tensor([5]))]
    res, = results_from_windows(per_window, windows, 4, [meta], rescale=False)
    assert res.bboxes.tolist() == [[1, 2, 3, 4], [81, 42, 100, 60]]  # shifted, clipped
    # rescale: the head returned original pixels already; the origin is scaled the same way
    res, = results_from_windows(per_window, windows, 4, [meta], rescale=True)
    assert res.bboxes.tolist() == [[1, 2, 3, 4], [41, 82, 50, 110]]  # clipped to 100/2 x 60/0.5
    assert res.labels.tolist() == [0, 5]
    res, = results_from_windows(per_window, windows, 4, [meta], rescale=False, margin=2)
    assert res.bboxes.tolist() == [[0, 0, 0, 0], [73, 34, 100, 60]]


def test_suppress_margin_zeroes_the_context_cells_only():
    scores = torch.ones(2, 3, 6, 7)
    out = suppress_margin(scores, 2)
    assert out[:, :, 2:4, 2:5].eq(1).all() and out.sum() == 2 * 3 * 2 * 3
    assert suppress_margin(scores, 0) is scores


def test_affm_enhance_and_training_score():
    feat = torch.ones(1, 2, 4, 4)
    logits = torch.full((1, 1, 2, 2), -1e4)
    logits[0, 0, 0, 0] = 1e4
    out, m = AFFM.enhance(feat, logits)
    assert out.shape == (1, 2, 4, 4) and m.shape == (1, 1, 4, 4)
    assert out[0, 0, 0, 0] == 2.0 and out[0, 0, 3, 3] == 1.0  # (1 + m), never below 1x
    gt = torch.zeros(1, 1, 2, 2)
    gt[0, 0, 1, 1] = 1
    score = AFFM.training_score(m, gt)
    assert score[0, 0, 3, 3] == 1.0 and score[0, 0, 0, 0] == 1.0 and not score.requires_grad
    assert AFFM(window=32).peak_kernel == 33


def test_irfi_starts_as_identity_and_mixes_windows_once_trained():
    torch.manual_seed(0)
    irfi = IRFI(in_channels=16, roi_size=8, reduce_channels=4, num_heads=2)
    irfi.init_weights()
    feat = torch.randn(2, 16, 20, 24)
    windows = torch.tensor([[0, 0, 0, 8, 8], [0, 10, 6, 18, 14], [1, 4, 4, 12, 12], [1, 16, 12, 24, 20]])

    def run(f, w=windows, margin=0):
        return irfi(crop_windows(f, w, margin), w, f.mean(dim=(2, 3)), f.shape[-2:], margin)

    assert torch.equal(run(feat), crop_windows(feat, windows))
    torch.nn.init.normal_(irfi.modulation.weight, std=0.1)
    out = run(feat)
    assert out.shape == (4, 16, 8, 8) and not torch.allclose(out, crop_windows(feat, windows))
    # interaction: changing window 1 of image 0 changes window 0's modulation, not image 1's
    feat2 = feat.clone()
    feat2[0, :, 6:14, 10:18] += 1.0
    out2 = run(feat2)
    assert not torch.allclose(out2[0], out[0]) and torch.allclose(out2[2:], out[2:], atol=1e-6)
    # an image with fewer windows (padded, masked) gets what it would get alone
    assert torch.allclose(run(feat, windows[[0, 1, 2]])[2:], run(feat[1:], torch.tensor([[0, 4, 4, 12, 12]])),
                          atol=1e-6)
    # crops with a context margin: the window's tokens are the same, the margin is modulated too
    assert torch.allclose(run(feat, margin=2)[..., 2:-2, 2:-2], out, atol=1e-6)


def test_mask_estimator_shapes_losses_and_names():
    est = MaskEstimator(in_channels=8, feat_channels=8, num_convs=1,
                        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                        loss_dice=dict(type='DiceLoss', use_sigmoid=True, loss_weight=1.0))
    est.init_weights()
    p3, p4 = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8)
    logits = est([p3, p4])
    assert [tuple(t.shape) for t in logits] == [(2, 1, 16, 16), (2, 1, 8, 8)]
    targets = [torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 8, 8)]
    losses = est.loss(logits, targets)
    assert set(losses) == {'loss_mask_s', 'loss_mask_l'}
    # the BCE term alone, by hand: prior bias log(0.05/0.95) on an all-zero target
    bce = MaskEstimator(in_channels=8, feat_channels=8, num_convs=0)
    bce.init_weights()
    torch.nn.init.zeros_(bce.decoders[0][-1].weight)
    loss = bce.loss(bce([p3, p4]), targets)['loss_mask_s']
    assert loss.item() == pytest.approx(-torch.log(torch.tensor(0.95)).item(), rel=1e-5)
    with pytest.raises(ValueError, match='loss_names'):
        MaskEstimator(model_num=3)
