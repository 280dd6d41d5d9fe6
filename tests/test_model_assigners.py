"""The HD head's batched assignment: equal to mmdet's per-image ATSS / TaskAligned + TOOD
targets, and the tie-safe ATSS threshold that keeps objects lying inside one prior."""

import copy

import pytest
import torch
from mmdet.models.dense_heads import TOODHead
from mmdet.models.task_modules.assigners import ATSSAssigner
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine import MessageHub
from mmengine.config import Config
from mmengine.structures import InstanceData

import afmcli.models  # noqa: F401
from afmcli.models.assigners import BatchATSSAssigner, pad_ground_truth

register_all_modules()
GRID = AnchorGenerator(ratios=[1.0], octave_base_scale=8, scales_per_octave=1, strides=[4])
# [30, 30, 40, 60] lies wholly inside the priors at (36, 44) and (32, 44) (IoU 300/1024 = 0.2930)
# and partly in those at (36, 48), (32, 48) (0.2682): mean + std = 0.2949 > 0.2930.
INSIDE_ONE_PRIOR = [30., 30, 40, 60]


def hd_head_cfg(train_cfg_changes=None):
    model = Config.fromfile('configs/AFM/afmnet_tiny_synth.py', import_custom_modules=False).model
    head = copy.deepcopy(model.hd_head)
    head.train_cfg = {**model.train_cfg, **head.train_cfg, **(train_cfg_changes or {})}
    return head


def grid_priors(h=24, w=24):
    return GRID.single_level_grid_priors((h, w), 0, device='cpu')


def test_an_object_inside_one_prior_gets_a_positive_in_the_hd_head():
    """The HD head as configured (tiny and published configs name the same assigner) gives the
    object a positive; mmdet's ATSSAssigner, which the HD head used before, gives none."""
    head = MODELS.build(hd_head_cfg())
    priors = grid_priors()
    gt = InstanceData(bboxes=torch.tensor([INSIDE_ONE_PRIOR]), labels=torch.tensor([3]))
    assigned, _ = head.initial_assigner.assign_batch(priors[None], torch.ones(1, len(priors), dtype=torch.bool),
                                                     pad_ground_truth([gt], 'cpu'))
    positives = priors[assigned[0] >= 0]
    assert positives.tolist() == [[16., 28., 48., 60.], [20., 28., 52., 60.]]  # both that contain it
    mmdet = ATSSAssigner(topk=4).assign(InstanceData(priors=priors), [len(priors)], gt)
    assert int((mmdet.gt_inds > 0).sum()) == 0
    published = Config.fromfile('configs/AFM/AFMNet-tood_r50_k13.py', import_custom_modules=False)
    assert published.model.hd_head.train_cfg.initial_assigner == dict(type='BatchATSSAssigner', topk=4,
                                                                      keep_best=True)


def random_case(seed, n=2, h=16, w=20, objects=(5, 0)):
    gen = torch.Generator().manual_seed(seed)
    priors = grid_priors(h, w)
    valid = torch.rand(n, len(priors), generator=gen) > 0.2
    gts = []
    for count in objects[:n]:
        xy = torch.rand(count, 2, generator=gen) * torch.tensor([w * 4 - 20.0, h * 4 - 20.0])
        wh = 4 + torch.rand(count, 2, generator=gen) * 30
        gts.append(InstanceData(bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, 10, (count,), generator=gen)))
    scores = torch.rand(n, len(priors), 10, generator=gen)
    boxes = priors[None].repeat(n, 1, 1) + torch.randn(n, len(priors), 4, generator=gen) * 6
    return priors, valid, gts, scores, boxes


@pytest.mark.parametrize('seed', range(6))
def test_batch_atss_without_keep_best_is_mmdets_atss(seed):
    priors, valid, gts, _, _ = random_case(seed, objects=(7, 4))
    ours, _ = BatchATSSAssigner(topk=4, keep_best=False).assign_batch(
        priors[None].repeat(2, 1, 1), valid, pad_ground_truth(gts, 'cpu'))
    for i, gt in enumerate(gts):
        inside = valid[i]
        ref = ATSSAssigner(topk=4).assign(InstanceData(priors=priors[inside]), [int(inside.sum())], gt)
        want = torch.full((len(priors),), -1)
        want[inside] = ref.gt_inds - 1
        assert torch.equal(ours[i], want)


def test_keep_best_only_adds_positives():
    """keep_best only lowers thresholds, so every prior positive under mmdet's rule stays
    positive; on these random cases some objects that mmdet leaves without a positive gain one."""
    gained = 0
    for seed in range(10):
        priors, valid, gts, _, _ = random_case(seed, objects=(8, 8))
        padded = pad_ground_truth(gts, 'cpu')
        stacked = priors[None].repeat(2, 1, 1)
        plain, _ = BatchATSSAssigner(topk=4, keep_best=False).assign_batch(stacked, valid, padded)
        kept, _ = BatchATSSAssigner(topk=4, keep_best=True).assign_batch(stacked, valid, padded)
        assert not ((plain >= 0) & (kept < 0)).any()
        gained += sum(int((kept[i] == g).any() and not (plain[i] == g).any()) for i in range(2) for g in range(8))
    assert gained > 0


@pytest.mark.parametrize('epoch', [0, 5])  # ATSS (keep_best off: mmdet's rule), TaskAligned
def test_hd_targets_equal_toods_per_image_targets(epoch):
    """labels, label weights, box targets and (normalised) alignment metrics for a batch, from
    `targets_by_cells`, equal mmdet's TOODHead.get_targets image by image (one empty image)."""
    MessageHub.get_current_instance().update_info('epoch', epoch)
    ours = MODELS.build(hd_head_cfg(dict(initial_assigner=dict(type='BatchATSSAssigner', topk=4,
                                                               keep_best=False))))
    ref_cfg = hd_head_cfg(dict(initial_assigner=dict(type='ATSSAssigner', topk=4),
                               assigner=dict(type='TaskAlignedAssigner', topk=3)))
    ref_cfg.type = 'TOODHead'
    ref = MODELS.build(ref_cfg)
    assert isinstance(ref, TOODHead)
    priors, valid, gts, scores, boxes = random_case(epoch + 11, objects=(9, 0))
    metas = [dict(img_shape=(64, 80), pad_shape=(64, 80))] * 2
    labels, weights, targets, metrics = ours.targets_by_cells(scores, boxes / 4, priors[None].repeat(2, 1, 1),
                                                              valid, gts)
    _, ref_labels, ref_weights, ref_targets, ref_metrics = ref.get_targets(
        scores, boxes, [[priors]] * 2, [[v] for v in valid], gts, metas)
    assert torch.equal(labels, ref_labels[0])
    assert torch.equal(weights, ref_weights[0])
    torch.testing.assert_close(targets, ref_targets[0])
    torch.testing.assert_close(metrics, ref_metrics[0])
    assert (labels[0] < 10).sum() > 0 and (labels[1] < 10).sum() == 0  # positives; none without objects


def test_pad_ground_truth_pads_to_the_largest_image():
    gts = [InstanceData(bboxes=torch.ones(2, 4), labels=torch.tensor([1, 2])),
           InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    padded = pad_ground_truth(gts, 'cpu')
    assert padded.boxes.shape == (2, 2, 4) and padded.valid.tolist() == [[True, True], [False, False]]
    assert padded.labels.tolist() == [[1, 2], [0, 0]]
    empty = pad_ground_truth(gts[1:], 'cpu')
    assert empty.boxes.shape == (1, 1, 4) and not empty.valid.any()  # G >= 1: max over objects is defined
