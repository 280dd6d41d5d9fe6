"""Windows, AFFM, IRFI and the FPD mask estimator, each alone, on hand-worked cases."""

import pytest
import torch
import torch.nn.functional as F

import afmcli.models  # noqa: F401  (registers the modules)
from afmcli.models.affm import AFFM, upsample_on_priors
from afmcli.models.irfi import IRFI
from afmcli.models.mask_estimator import MaskEstimator
from afmcli.models.windows import (Windows, core_cells, crop_windows, full_windows, gather_windows, mine_windows,
                                   window_cells, window_size)


def windows_of(rows, k, size, margin=0, valid=None):
    rows = torch.tensor(rows)
    return Windows(rows, torch.ones(len(rows), dtype=torch.bool) if valid is None else torch.tensor(valid),
                   k, size, margin)


def test_mine_windows_finds_the_two_blobs_in_mass_order():
    score = torch.zeros(1, 1, 40, 60)
    score[0, 0, 5:9, 10:14] = 1.0  # mass 16
    score[0, 0, 30:32, 50:52] = 1.0  # mass 4
    windows = mine_windows(score, [(40, 60)], topk=2, window=8, peak_kernel=9, margin=2)
    assert windows.rows[:, 0].tolist() == [0, 0] and windows.valid.all()  # rows (image, x0, y0, x1, y1)
    assert (windows.k, windows.size, windows.margin) == (2, (8, 8), 2)
    for (_, x0, y0, x1, y1), (by, bx) in zip(windows.rows.tolist(), [(5, 10), (30, 50)]):
        assert (x1 - x0, y1 - y0) == (8, 8)
        assert x0 <= bx and bx + 2 <= x1 and y0 <= by and by + 2 <= y1  # blob inside
    # the larger blob is entirely inside its window
    _, x0, y0, x1, y1 = windows.rows[0].tolist()
    assert score[0, 0, y0:y1, x0:x1].sum() == 16
    assert windows.origins.tolist() == [[x0 - 2, y0 - 2], windows.rows[1, 1:3].sub(2).tolist()]


def test_mine_windows_clips_to_map_and_to_valid_area():
    score = torch.zeros(2, 1, 10, 12)
    score[0, 0, 8:, 10:] = 1.0  # mass in the bottom-right corner
    score[1, 0, 4:6, 5:7] = 1.0  # ... of the valid area
    score[1, 0, 8:, 10:] = 5.0  # padding: never mined
    windows = mine_windows(score, [(10, 12), (6, 7)], topk=1, window=16, peak_kernel=17)
    assert windows.rows[0].tolist() == [0, 0, 0, 12, 10]  # window larger than map: the map
    windows = mine_windows(score, [(10, 12), (6, 7)], topk=1, window=4, peak_kernel=5)
    assert windows.rows.tolist() == [[0, 8, 6, 12, 10],
                                     [1, 3, 2, 7, 6]]  # kept inside the 6x7 valid cells
    assert window_size((10, 12), 16) == (10, 12)


def test_mine_windows_peaks_suppress_neighbours():
    score = torch.zeros(1, 1, 20, 20)
    score[0, 0, 8:12, 8:12] = 1.0
    windows = mine_windows(score, [(20, 20)], topk=2, window=4, peak_kernel=5)
    (_, ax, ay, _, _), (_, bx, by, _, _) = windows.rows.tolist()
    assert max(abs(ax - bx), abs(ay - by)) > 2  # the second window is not a shifted copy


def test_mine_windows_never_repeats_a_window_of_a_small_image_in_a_large_batch():
    """Image 1 (valid 6x5 cells) is smaller than a window (8x8) in a batch padded to 20x24:
    only one window position is allowed, so one slot is valid, not k copies of it (which
    would teach the same objects k times). Image 0 gets its k distinct windows."""
    score = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    windows = mine_windows(score, [(20, 24), (6, 5)], topk=3, window=8, peak_kernel=9)
    assert windows.rows[:, 0].tolist() == [0, 0, 0, 1, 1, 1]  # k slots per image, always
    assert windows.valid.tolist() == [True, True, True, True, False, False]
    assert windows.rows[3].tolist() == [1, 0, 0, 8, 8]
    valid_rows = [tuple(w) for w, v in zip(windows.rows.tolist(), windows.valid.tolist()) if v]
    assert len(set(valid_rows)) == len(valid_rows)
    # valid area one cell wider than a window: two positions, two windows
    windows = mine_windows(score, [(20, 24), (8, 9)], topk=3, window=8, peak_kernel=9)
    assert sorted(w[1:3] for w, v in zip(windows.rows.tolist(), windows.valid.tolist()) if w[0] == 1 and v) == \
        [[0, 0], [1, 0]]


def test_crop_windows_with_margin_in_one_gather():
    feat = torch.arange(2 * 3 * 8 * 10, dtype=torch.float).view(2, 3, 8, 10)
    windows = windows_of([[0, 0, 0, 4, 4], [0, 6, 4, 10, 8], [1, 2, 2, 6, 6], [1, 0, 4, 4, 8]], 2, (4, 4))
    crops, inside = crop_windows(feat, windows)
    assert crops.shape == (4, 3, 4, 4) and inside.shape == (4, 1, 4, 4) and inside.all()
    assert crops.is_contiguous()  # mmcv's roi_align reads dense NCHW
    assert torch.equal(crops[1], feat[0, :, 4:8, 6:10])
    assert torch.equal(crops[2], feat[1, :, 2:6, 2:6])
    assert full_windows(2, (8, 10)).rows.tolist() == [[0, 0, 0, 10, 8], [1, 0, 0, 10, 8]]
    crops, inside = crop_windows(feat, windows._replace(margin=1))  # one cell of context each side
    assert crops.shape == (4, 3, 6, 6)
    assert torch.equal(crops[2], feat[1, :, 1:7, 1:7])
    assert torch.equal(crops[0, :, 1:, 1:], feat[0, :, :5, :5])  # zeros beyond the map
    assert crops[0, :, 0].abs().sum() == 0 and crops[0, :, :, 0].abs().sum() == 0
    assert inside[0, 0, 0].sum() == 0 and inside[0, 0, 1:, 1:].all() and inside[2].all()
    # its backward adds each crop's gradient back where the crop came from
    small = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    origins, batch = torch.tensor([[-1, -1], [0, 0], [2, 1]]), torch.tensor([0, 0, 1])
    assert torch.autograd.gradcheck(lambda f: gather_windows(f, origins, batch, (5, 5))[0], (small,))


def test_window_cells_give_each_overlapping_cell_to_the_window_it_is_most_central_in():
    """Windows A (x 0..3) and B (x 2..5) of 4x4 cells overlap in columns 2-3. A cell's
    centrality is its distance to the window's nearest edge (rows and columns 0, 1, 1, 0):
    (1, 2) is 1 deep in A and 0 in B, so A's; (1, 3) is B's; on row 0 both are 0 deep, and
    the earlier pick (A) wins. Column 5 lies beyond the image's 5 valid columns."""
    windows = windows_of([[0, 0, 0, 4, 4], [0, 2, 0, 6, 4], [0, 0, 0, 4, 4]], 3, (4, 4), valid=[True, True, False])
    flat, valid = window_cells(windows, (4, 8), [(4, 5)])
    assert flat.shape == valid.shape == (1, 48)
    a, b, c = valid[0].view(3, 4, 4)
    assert a[1, 2] and not b[1, 0] and b[1, 1] and not a[1, 3]  # (1, 2) A's; (1, 3) B's
    assert a[0, 2] and a[0, 3] and not b[0, 0] and not b[0, 1]  # row 0: the earlier pick
    assert not b[:, 3].any()  # column 5: outside the valid area
    assert not c.any()  # the invalid slot
    assert flat[0, 16 + 5].item() == 1 * 8 + 3  # B's cell (1, 1) is map cell (1, 3)
    # every valid map cell of the union counted exactly once
    counted = flat[valid]
    assert len(counted) == len(set(counted.tolist())) == 4 * 5


def test_core_cells_follow_window_cells_order():
    windows = windows_of([[0, 0, 0, 2, 2], [0, 2, 0, 4, 2], [1, 0, 0, 2, 2], [1, 1, 1, 3, 3]], 2, (2, 2), margin=1)
    maps = torch.arange(4 * 2 * 4 * 4, dtype=torch.float).view(4, 2, 4, 4)
    cells = core_cells(maps, windows)
    assert cells.shape == (2, 8, 2)  # 2 images, 2 windows x 2x2 cells, 2 channels
    assert cells[1, 4 + 3].tolist() == maps[3, :, 2, 2].tolist()  # image 1, window 1, cell (1, 1)
    assert cells[0, 1].tolist() == maps[0, :, 1, 2].tolist()


def test_upsample_on_priors_puts_cell_j_at_the_prior_point():
    """Stride 8 -> 4: output 2j is input j, 2j + 1 the mean of j and j + 1, the last repeats.
    F.interpolate (align_corners=False) reads cell centres: output 0 is a quarter off."""
    maps = torch.tensor([[[[0., 1, 3]]]])
    out = upsample_on_priors(maps, (2, 6))
    assert out.tolist() == [[[[0, 0.5, 1, 2, 3, 3], [0, 0.5, 1, 2, 3, 3]]]]
    assert F.interpolate(maps, size=(2, 6), mode='bilinear')[0, 0, 0, 1].item() == pytest.approx(0.25)
    assert upsample_on_priors(maps, (1, 3)) is maps


def test_affm_enhance_and_mining_scores():
    feat = torch.ones(1, 2, 4, 4)
    logits = torch.full((1, 1, 2, 2), -1e4)
    logits[0, 0, 0, 0] = 1e4
    out, m = AFFM.enhance(feat, logits)
    assert out.shape == (1, 2, 4, 4) and m.shape == (1, 1, 4, 4)
    assert out[0, 0, 0, 0] == 2.0 and out[0, 0, 3, 3] == 1.0 and out[0, 0, 0, 1] == 1.5  # (1 + m), >= 1x
    gt = torch.zeros(1, 1, 2, 2)
    gt[0, 0, 1, 1] = 1
    score = AFFM.training_score(m, gt)
    assert score[0, 0, 2, 2] == 1.0 and score[0, 0, 0, 0] == 1.0 and not score.requires_grad
    assert score[0, 0, 1, 1] == 0.5  # halfway between on and off cells of gt and of m: 0.25 + 0.25
    assert AFFM(window=32).peak_kernel == 33
    main = torch.zeros(1, 10, 2, 2)
    main[0, 7, 1, 0] = 0.8  # the main head's best class at a cell the mask misses
    assert torch.equal(AFFM(test_score='mask').test_score(m, main), m)
    both = AFFM(test_score='mask_or_main').test_score(m, main)
    assert both[0, 0, 2, 0] == pytest.approx(0.8) and both[0, 0, 0, 0] == 1.0
    with pytest.raises(ValueError, match='test_score'):
        AFFM(test_score='main')
    # more windows in training (topk_train): 20 x 32 x 32 cells exceed a 100x168 map, not 200x336
    affm = AFFM(topk=13, topk_train=20, window=32)
    assert affm.windows_cheaper((100, 168)) and not affm.windows_cheaper((100, 168), training=True)
    score = torch.rand(1, 1, 200, 336)
    assert affm.mine(score, [(200, 336)], training=True).k == 20 and affm.mine(score, [(200, 336)]).k == 13


def test_irfi_starts_as_identity_and_mixes_windows_once_trained():
    torch.manual_seed(0)
    irfi = IRFI(in_channels=16, roi_size=8, reduce_channels=4, num_heads=2)
    irfi.init_weights()
    feat = torch.randn(2, 16, 20, 24)
    windows = windows_of([[0, 0, 0, 8, 8], [0, 10, 6, 18, 14], [1, 4, 4, 12, 12], [1, 16, 12, 24, 20]], 2, (8, 8))

    def run(f, w=windows):
        crops, inside = crop_windows(f, w)
        return irfi(crops, w, inside, f.mean(dim=(2, 3)), f.shape[-2:])

    assert torch.equal(run(feat), crop_windows(feat, windows)[0])
    torch.nn.init.normal_(irfi.modulation.weight, std=0.1)
    torch.nn.init.normal_(irfi.modulation.bias, std=0.1)
    out = run(feat)
    assert out.shape == (4, 16, 8, 8) and not torch.allclose(out, crop_windows(feat, windows)[0])
    # interaction: changing window 1 of image 0 changes window 0's modulation, not image 1's
    feat2 = feat.clone()
    feat2[0, :, 6:14, 10:18] += 1.0
    out2 = run(feat2)
    assert not torch.allclose(out2[0], out[0]) and torch.allclose(out2[2:], out[2:], atol=1e-6)
    # an invalid slot (masked out of the attention) does not change the valid ones
    masked = run(feat, windows._replace(valid=torch.tensor([True, True, True, False])))
    alone = run(feat[1:], windows_of([[0, 4, 4, 12, 12], [0, 4, 4, 12, 12]], 2, (8, 8), valid=[True, False]))
    assert torch.allclose(masked[2], alone[0], atol=1e-6)
    # with a context margin: the same tokens, the margin modulated too, the shift only in the map
    margin = windows._replace(margin=2)
    wide = run(feat, margin)
    assert torch.allclose(wide[..., 2:-2, 2:-2], out, atol=1e-6)
    assert wide[0, :, :2, :].abs().sum() == 0 and wide[0, :, :, :2].abs().sum() == 0  # beyond the map: 0
    assert wide[3, :, -2:, :].abs().sum() == 0 and wide[1, :, :2, :].abs().sum() > 0


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


def test_dice_is_averaged_over_the_images_with_objects():
    """On an image without small objects Dice is a constant 1 with no gradient: it is left
    out, so the term is the Dice of the images with objects, and the empty image's
    predictions move only the BCE term."""
    est = MaskEstimator(in_channels=4, feat_channels=4, num_convs=0, model_num=1, loss_names=('loss_mask_s',),
                        loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.0),
                        loss_dice=dict(type='DiceLoss', use_sigmoid=True, loss_weight=1.0))
    logits = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(2, 1, 6, 6)
    target[0, 0, 1:3, 2:5] = 1
    both = est.loss([logits], [target])['loss_mask_s']
    alone = est.loss([logits[:1]], [target[:1]])['loss_mask_s']
    assert both.item() == pytest.approx(alone.item(), rel=1e-6)
    moved = logits.clone()
    moved[1] += 3.0
    assert est.loss([moved], [target])['loss_mask_s'].item() == pytest.approx(both.item(), rel=1e-6)
    assert est.loss([logits], [torch.zeros_like(target)])['loss_mask_s'].item() == 0.0
