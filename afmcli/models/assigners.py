"""Batched label assignment for the HD head: ATSS (with a tie-safe threshold) and TOOD's
task-aligned assigner, for all images of a batch in one set of tensor operations.

mmdet's assigners work one image at a time, with a Python loop over the objects and host
syncs (boolean indexing, `nonzero`, `unique`); on a GPU their launch and sync overhead, not
their arithmetic, is the HD head's training cost. Here every image has the same number P of
prior slots (the cells of its k windows, see `afmcli.models.windows.window_cells`), invalid
ones flagged, and ground truth is padded to the batch's largest count G, so one assignment
is a few (N, P, G) tensor operations with no sync.

Results equal mmdet's `ATSSAssigner` and `TaskAlignedAssigner` followed by TOOD's targets
(`TOODHead._get_targets_single`) where mmdet's are defined (tested against them), except
for one rule of ATSS that is a bug for small priors:

ATSS keeps candidates whose IoU reaches mean + std of the object's candidate IoUs. An object
lying wholly inside a prior gets tied IoUs (the priors around it all contain it: [b, b, a, a]
with topk 4), and mean + std (unbiased std) exceeds b, so no candidate passes and the object
is trained as background. At stride 4 with 32-px priors this dropped a quarter of the
in-window objects on real VisDrone crops. With ``keep_best`` the threshold is
min(mean + std, best candidate IoU): the best candidate always passes (if its centre lies in
the object, as ATSS requires).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

INF = 1e8
IN_BOX_EPS = 0.01  # mmdet's: a prior centre must lie this far inside the object


class PaddedGT(NamedTuple):
    """Ground truth of a batch padded to G objects: boxes (N, G, 4), labels (N, G) long,
    valid (N, G) bool (False for padding). G >= 1."""
    boxes: Tensor
    labels: Tensor
    valid: Tensor


def pad_ground_truth(batch_gt_instances: Sequence, device) -> PaddedGT:
    """PaddedGT from mmdet's per-image gt_instances (bboxes as tensors or BaseBoxes)."""
    boxes = [g.bboxes.tensor if hasattr(g.bboxes, 'tensor') else g.bboxes for g in batch_gt_instances]
    n, g = len(boxes), max([1] + [len(b) for b in boxes])
    out = PaddedGT(torch.zeros(n, g, 4, device=device), torch.zeros(n, g, dtype=torch.long, device=device),
                   torch.zeros(n, g, dtype=torch.bool, device=device))
    for i, (b, gt) in enumerate(zip(boxes, batch_gt_instances)):
        out.boxes[i, :len(b)] = b
        out.labels[i, :len(b)] = gt.labels
        out.valid[i, :len(b)] = True
    return out


def centres(boxes: Tensor) -> Tensor:
    """(..., 2) centres of (..., 4) x1y1x2y2 boxes."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def _candidates_inside(prior_centres: Tensor, candidates: Tensor, gt_boxes: Tensor) -> Tensor:
    """(N, k, G) whether candidate prior candidates[n, j, g]'s centre lies inside object g."""
    n, k, g = candidates.shape
    c = prior_centres.gather(1, candidates.reshape(n, k * g, 1).expand(-1, -1, 2)).view(n, k, g, 2)
    gt = gt_boxes[:, None]
    gaps = torch.stack([c[..., 0] - gt[..., 0], c[..., 1] - gt[..., 1], gt[..., 2] - c[..., 0],
                        gt[..., 3] - c[..., 1]], dim=-1)
    return gaps.min(dim=-1).values > IN_BOX_EPS


def _resolve(ious: Tensor, candidates: Tensor, is_pos: Tensor) -> tuple[Tensor, Tensor]:
    """(assigned (N, P) gt index or -1, its IoU): a prior that is a positive candidate of
    several objects goes to the one it overlaps most, as in mmdet."""
    pos = torch.zeros_like(ious, dtype=torch.bool).scatter_(1, candidates, is_pos)
    best, arg = ious.masked_fill(~pos, -INF).max(dim=2)
    return torch.where(best > -INF, arg, torch.full_like(arg, -1)), best


@TASK_UTILS.register_module()
class BatchATSSAssigner:
    """ATSS over a batch of equal-size prior sets (one pyramid level, as the HD head has).

    Args:
        topk: candidates per object (mmdet's ATSSAssigner topk; AFMNet publishes 4).
        keep_best: threshold min(mean + std, best candidate IoU) (see the module docstring);
            False gives mmdet's rule.
    """

    def __init__(self, topk: int, keep_best: bool = True) -> None:
        self.topk = topk
        self.keep_best = keep_best

    def assign_batch(self, priors: Tensor, valid: Tensor, gt: PaddedGT) -> tuple[Tensor, Tensor]:
        """priors (N, P, 4) boxes, valid (N, P) bool -> (assigned (N, P) gt index or -1,
        IoU (N, P) with it)."""
        ious = bbox_overlaps(priors, gt.boxes)  # (N, P, G)
        prior_c, gt_c = centres(priors), centres(gt.boxes)
        distances = (prior_c[:, :, None] - gt_c[:, None]).pow(2).sum(-1).sqrt()
        distances = distances.masked_fill(~valid[..., None], INF)
        k = min(self.topk, priors.shape[1])
        cand_dist, candidates = distances.topk(k, dim=1, largest=False)  # (N, k, G)
        cand_valid = cand_dist < INF
        cand_ious = ious.gather(1, candidates)
        count = cand_valid.sum(1)
        mean = (cand_ious * cand_valid).sum(1) / count.clamp(min=1)
        var = ((cand_ious - mean[:, None]).pow(2) * cand_valid).sum(1) / (count - 1).clamp(min=1)
        threshold = mean + var.sqrt()
        if self.keep_best:
            threshold = torch.minimum(threshold, cand_ious.masked_fill(~cand_valid, -1).max(dim=1).values)
        is_pos = (cand_ious >= threshold[:, None]) & cand_valid & gt.valid[:, None] \
            & _candidates_inside(prior_c, candidates, gt.boxes)
        return _resolve(ious, candidates, is_pos)


@TASK_UTILS.register_module()
class BatchTaskAlignedAssigner:
    """TOOD's task-aligned assigner over a batch: the `topk` priors of largest
    score^alpha * IoU^beta per object, centre inside the object."""

    def __init__(self, topk: int) -> None:
        if topk < 1:
            raise ValueError(f'BatchTaskAlignedAssigner: topk must be >= 1, got {topk}')
        self.topk = topk

    def assign_batch(self, scores: Tensor, pred_boxes: Tensor, priors: Tensor, valid: Tensor, gt: PaddedGT,
                     alpha: float, beta: float) -> tuple[Tensor, Tensor, Tensor]:
        """scores (N, P, C) probabilities, pred_boxes (N, P, 4) pixels, priors (N, P, 4), valid
        (N, P) -> (assigned (N, P) gt index or -1, IoU (N, P) of the prediction with it,
        alignment metric (N, P) with it; 0 where unassigned)."""
        n, p, _ = scores.shape
        ious = bbox_overlaps(pred_boxes.detach(), gt.boxes).detach()  # (N, P, G)
        cls = scores.detach().gather(2, gt.labels[:, None].expand(n, p, -1))
        metrics = cls ** alpha * ious ** beta
        k = min(self.topk, p)
        cand_metrics, candidates = metrics.masked_fill(~valid[..., None], -1).topk(k, dim=1)
        is_pos = (cand_metrics > 0) & gt.valid[:, None] & _candidates_inside(centres(priors), candidates, gt.boxes)
        assigned, best = _resolve(ious, candidates, is_pos)
        own = assigned.clamp(min=0)[..., None]
        metric = torch.where(assigned >= 0, metrics.gather(2, own)[..., 0], torch.zeros_like(best))
        return assigned, torch.where(assigned >= 0, best, torch.zeros_like(best)), metric


def normalised_alignment(assigned: Tensor, ious: Tensor, metrics: Tensor, num_gt: int) -> Tensor:
    """TOOD's soft targets: each positive's metric / (its object's largest metric + 1e-7) *
    the object's largest IoU; 0 elsewhere (mmdet's per-object loop, batched)."""
    own = assigned.clamp(min=0)
    onehot = assigned[..., None] == torch.arange(num_gt, device=assigned.device)  # -1 matches none
    top_metric = torch.where(onehot, metrics[..., None], torch.zeros_like(metrics[..., None])).max(dim=1).values
    top_iou = torch.where(onehot, ious[..., None], torch.zeros_like(ious[..., None])).max(dim=1).values
    norm = metrics / (top_metric.gather(1, own) + 10e-8) * top_iou.gather(1, own)
    return torch.where(assigned >= 0, norm, torch.zeros_like(norm))
