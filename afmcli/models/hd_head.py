"""The HD head: mmdet's TOODHead run on window crops, trained and decoded per image on the
windows' core cells."""

from __future__ import annotations

from mmcv.ops import deform_conv2d
from mmdet.models.dense_heads import TOODHead
from mmdet.registry import MODELS
from mmdet.utils import reduce_mean
from mmengine import MessageHub
from torch import Tensor

from .assigners import normalised_alignment, pad_ground_truth


@MODELS.register_module()
class WindowTOODHead(TOODHead):
    """TOODHead (same arguments and state_dict keys) for the windows of AFMNet.

    The convolutions run on the crops as on small images (`forward` is TOODHead's). Targets
    and predictions are per image over the cells the windows own, given as flat tensors:
    `loss_by_cells` assigns every image of the batch at once with the batched assigners its
    train_cfg names (`BatchATSSAssigner`, `BatchTaskAlignedAssigner`), with no host sync;
    `predict_by_cells` decodes each image once (one NMS per image).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.train_cfg:
            for key, assigner in (('initial_assigner', self.initial_assigner), ('assigner', self.alignment_assigner)):
                if not hasattr(assigner, 'assign_batch'):
                    raise ValueError(f"WindowTOODHead: train_cfg.{key} {type(assigner).__name__} works one image "
                                     "at a time; use BatchATSSAssigner / BatchTaskAlignedAssigner")

    def deform_sampling(self, feat: Tensor, offset: Tensor) -> Tensor:
        """TOODHead's, in one call for all crops: mmcv's deform_conv2d processes im2col_step
        images at a time (32 by default, and asserts that a larger batch is a multiple of it);
        one step for the whole batch is one im2col buffer the size of the input (1x1 kernel)."""
        c = feat.shape[1]
        # (autograd Function: positional only; False is `bias`, then im2col_step)
        return deform_conv2d(feat, offset, feat.new_ones(c, 1, 1, 1), 1, 0, 1, c, c, False, feat.shape[0])

    def targets_by_cells(self, cls_scores: Tensor, bbox_preds: Tensor, priors: Tensor, valid: Tensor,
                         batch_gt_instances) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """TOOD's targets of a batch's cells, all images at once: cls_scores (N, P, C),
        bbox_preds (N, P, 4) decoded boxes in stride units, priors (N, P, 4) pixels, valid
        (N, P) (the cells that count), image coordinates. ATSS before train_cfg.initial_epoch,
        TaskAligned after, as TOODHead.get_targets. Returns (labels (N, P), label_weights,
        bbox_targets (N, P, 4) pixels, alignment metrics), in TOODHead's conventions."""
        self.epoch = MessageHub.get_current_instance().get_info('epoch')
        gt = pad_ground_truth(batch_gt_instances, cls_scores.device)
        if self.epoch < self.initial_epoch:
            assigned, _ = self.initial_assigner.assign_batch(priors, valid, gt)
            metrics = (assigned >= 0).to(cls_scores.dtype)
        else:
            stride = self.prior_generator.strides[0][0]
            assigned, ious, metrics = self.alignment_assigner.assign_batch(
                cls_scores, bbox_preds * stride, priors, valid, gt, self.alpha, self.beta)
            metrics = normalised_alignment(assigned, ious, metrics, gt.boxes.shape[1])
        own, positive = assigned.clamp(min=0), assigned >= 0
        labels = gt.labels.gather(1, own).masked_fill(~positive, self.num_classes)
        bbox_targets = gt.boxes.gather(1, own[..., None].expand(-1, -1, 4)) * positive[..., None]
        label_weights = valid.to(cls_scores.dtype)
        if self.train_cfg['pos_weight'] > 0:
            label_weights = label_weights.masked_fill(positive, self.train_cfg['pos_weight'])
        return labels, label_weights, bbox_targets, metrics

    def loss_by_cells(self, cls_scores: Tensor, bbox_preds: Tensor, priors: Tensor, valid: Tensor,
                      batch_gt_instances) -> dict:
        """Losses of a batch's cells (arguments as `targets_by_cells`), normalised as
        TOODHead.loss_by_feat."""
        targets = self.targets_by_cells(cls_scores, bbox_preds, priors, valid, batch_gt_instances)
        loss_cls, loss_bbox, cls_avg, bbox_avg = self.loss_by_feat_single(
            priors, _as_map(cls_scores), _as_map(bbox_preds), *targets, self.prior_generator.strides[0])
        cls_avg = reduce_mean(cls_avg).clamp_(min=1).item()
        bbox_avg = reduce_mean(bbox_avg).clamp_(min=1).item()
        return dict(loss_cls=loss_cls / cls_avg, loss_bbox=loss_bbox / bbox_avg)

    def predict_by_cells(self, cls_scores: Tensor, bbox_preds: Tensor, valid: Tensor, batch_img_metas,
                         rescale: bool = False):
        """Detections per image from its cells (as `loss_by_cells`; cells that do not count
        score 0): TOODHead's decoding, with its test_cfg (score_thr, nms_pre, min_bbox_size
        after rescaling, NMS, max_per_img), so one NMS per image."""
        scores = cls_scores * valid[..., None]
        return self.predict_by_feat([_as_map(scores)], [_as_map(bbox_preds)], batch_img_metas=batch_img_metas,
                                    rescale=rescale)


def _as_map(cells: Tensor) -> Tensor:
    """(N, P, D) cells as the (N, D, 1, P) map that TOODHead's per-level code reads."""
    return cells.permute(0, 2, 1)[:, :, None]
