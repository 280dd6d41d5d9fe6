"""TOODHead's test-time decoding for a whole batch at once, NMS still per image.

mmdet's ``predict_by_feat`` loops over the images of a batch and, inside, over the
levels: score filter, top-k, gather, rescale, size filter and NMS, each a handful of
operators and host syncs per image and level. At 32 tiles of 512 px the tiny TOOD's
decoding dispatches 3,661 operators and 256 host syncs, against 642 operators for its
whole forward pass (bench/bench_decode.py): on a GPU the host then launches kernels one
by one while the device waits. Here each step runs once for the batch; only the NMS
(mmcv's, as mmdet calls it) stays per image.

The result is mmdet's, operation for operation (the same float32 products and
comparisons), except where two candidates have exactly the same score: the order of
such ties is unspecified in both (``sort`` against ``topk``), which can swap the one
kept at the ``nms_pre`` cut or in the NMS. Heads that decode otherwise (score factors,
another ``_predict_by_feat_single`` or ``_bbox_post_process``, ``nms_pre`` <= 0 or no
NMS) run mmdet's own code.
"""

from __future__ import annotations

import types

import torch
from mmcv.ops import batched_nms
from mmdet.models.dense_heads import TOODHead
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmengine.structures import InstanceData
from torch import Tensor


def decodes_as_tood(head) -> bool:
    """Whether ``head`` decodes exactly as TOODHead does (so the batched code is its code)."""
    cls = type(head)
    return (isinstance(head, TOODHead) and cls.predict_by_feat is BaseDenseHead.predict_by_feat
            and cls._predict_by_feat_single is TOODHead._predict_by_feat_single
            and cls._bbox_post_process is BaseDenseHead._bbox_post_process)


def batch_tood_decoding(module: torch.nn.Module) -> int:
    """Give every head of ``module`` that decodes as TOODHead the batched ``predict_by_feat``
    (on the instance; the class is untouched). Returns how many heads got it."""
    heads = [m for m in module.modules() if decodes_as_tood(m)]
    for head in heads:
        head.predict_by_feat = types.MethodType(batched_predict_by_feat, head)
    return len(heads)


def batched_predict_by_feat(head, cls_scores: list[Tensor], bbox_preds: list[Tensor], score_factors=None,
                            batch_img_metas: list[dict] | None = None, cfg=None, rescale: bool = False,
                            with_nms: bool = True) -> list[InstanceData]:
    """``TOODHead.predict_by_feat`` (same arguments, same results) with the batch decoded at once."""
    cfg = head.test_cfg if cfg is None else cfg
    if score_factors is not None or not with_nms or cfg.get('nms_pre', -1) <= 0:
        return type(head).predict_by_feat(head, cls_scores, bbox_preds, score_factors, batch_img_metas, cfg,
                                          rescale, with_nms)
    boxes, scores, labels, valid = [], [], [], []
    for cls_score, bbox_pred, stride in zip(cls_scores, bbox_preds, head.prior_generator.strides):
        n = cls_score.shape[0]
        level_boxes = bbox_pred.detach().permute(0, 2, 3, 1).reshape(n, -1, 4) * stride[0]
        level_scores = cls_score.detach().permute(0, 2, 3, 1).reshape(n, -1)
        # filter_scores_and_topk: the best nms_pre of the scores above score_thr, best first
        above = level_scores > cfg.score_thr
        top, index = level_scores.masked_fill(~above, float('-inf')).topk(
            min(cfg.nms_pre, level_scores.shape[1]), dim=1)
        boxes.append(level_boxes.gather(1, (index // head.cls_out_channels)[..., None].expand(-1, -1, 4)))
        scores.append(top)
        labels.append(index % head.cls_out_channels)
        valid.append(above.gather(1, index))
    boxes, scores, labels, valid = (torch.cat(t, dim=1) for t in (boxes, scores, labels, valid))
    if rescale:  # scale_boxes with [1 / s for s in scale_factor], as _bbox_post_process
        factors = boxes.new_tensor([[1 / s for s in meta['scale_factor']] * 2 for meta in batch_img_metas])
        boxes = boxes * factors[:, None, :]
    if cfg.get('min_bbox_size', -1) >= 0:
        valid &= (boxes[..., 2] - boxes[..., 0] > cfg.min_bbox_size) & \
                 (boxes[..., 3] - boxes[..., 1] > cfg.min_bbox_size)
    # Each image's kept candidates first, in their order; one host sync for all the counts.
    order = torch.sort((~valid).to(torch.uint8), dim=1, stable=True)[1]
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    scores, labels = scores.gather(1, order), labels.gather(1, order)
    results = []
    for i, count in enumerate(valid.sum(dim=1).tolist()):
        if count:  # batched_nms's dets are the kept boxes (not the class-offset ones) and their scores
            dets, keep = batched_nms(boxes[i, :count], scores[i, :count], labels[i, :count], cfg.nms)
            dets, keep = dets[:cfg.max_per_img], keep[:cfg.max_per_img]
            results.append(InstanceData(bboxes=dets[:, :4], scores=dets[:, 4], labels=labels[i, keep]))
        else:
            results.append(InstanceData(bboxes=boxes[i, :0], scores=scores[i, :0], labels=labels[i, :0]))
    return results
