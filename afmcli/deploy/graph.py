"""The detector's forward pass in standard ONNX operators, for export.

mmdet's TOODHead runs two things that the ONNX exporter cannot write with standard
operators or with a dynamic batch: ``deform_sampling`` (mmcv's ``deform_conv2d``, a custom
op) and its priors (``torch.cat`` of one copy per image: the batch size becomes a constant).
:func:`tood_head_forward` is ``TOODHead.forward`` with both rewritten: the sampling as
:func:`grid_deform_sampling`, the prior centres as a grid built from the map's size. The
export is checked against mmdet's forward on real images (tests/test_onnx_export.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def grid_deform_sampling(feat: Tensor, offset: Tensor) -> Tensor:
    """mmcv's ``deform_conv2d(feat, offset, ones(C, 1, 1, 1), stride 1, padding 0, dilation 1,
    groups C, deform_groups C)`` (TOODHead.deform_sampling) as ``F.grid_sample``.

    With a 1x1 all-ones kernel and one group per channel, output (c, y, x) is channel c read
    bilinearly at (y + dy, x + dx), where (dy, dx) are offset channels (2c, 2c + 1); mmcv reads
    corners outside the map as zeros, as grid_sample's ``padding_mode='zeros'`` does, and with
    ``align_corners=False`` pixel p sits at (2p + 1) / size - 1 in the normalised grid.
    """
    n, c, h, w = feat.shape
    offset = offset.reshape(n * c, 2, h, w)
    ys = torch.arange(h, dtype=feat.dtype, device=feat.device).view(1, -1, 1)
    xs = torch.arange(w, dtype=feat.dtype, device=feat.device).view(1, 1, -1)
    grid = torch.stack([(2 * (xs + offset[:, 1]) + 1) / w - 1, (2 * (ys + offset[:, 0]) + 1) / h - 1], dim=-1)
    out = F.grid_sample(feat.reshape(n * c, 1, h, w), grid, mode='bilinear', padding_mode='zeros',
                        align_corners=False)
    return out.reshape(n, c, h, w)


def tood_head_forward(head, feats) -> tuple[list[Tensor], list[Tensor]]:
    """``TOODHead.forward`` (anchor-free) for export: per level, the class scores (N, C, h, w)
    and the boxes (N, 4, h, w) x1 y1 x2 y2 in units of the level's stride."""
    if head.anchor_type != 'anchor_free':
        raise ValueError(f"TOODHead anchor_type {head.anchor_type!r}: only 'anchor_free' exports")
    cls_scores, bbox_preds = [], []
    for x, scale in zip(feats, head.scales):
        inter_feats = []
        for inter_conv in head.inter_convs:
            x = inter_conv(x)
            inter_feats.append(x)
        feat = torch.cat(inter_feats, 1)
        avg_feat = F.adaptive_avg_pool2d(feat, (1, 1))
        cls_feat = head.cls_decomp(feat, avg_feat)
        reg_feat = head.reg_decomp(feat, avg_feat)
        # mmdet's sigmoid_geometric_mean (an autograd.Function) forward
        cls_score = (head.tood_cls(cls_feat).sigmoid() * head.cls_prob_module(feat).sigmoid()).sqrt()
        dist = scale(head.tood_reg(reg_feat).exp()).float()
        # prior centres in stride units: AnchorGenerator's (centre offset 0) are x * stride, y * stride
        h, w = dist.shape[-2:]
        xs = torch.arange(w, dtype=dist.dtype, device=dist.device).view(1, 1, 1, -1)
        ys = torch.arange(h, dtype=dist.dtype, device=dist.device).view(1, 1, -1, 1)
        reg_bbox = torch.cat([xs - dist[:, 0:1], ys - dist[:, 1:2], xs + dist[:, 2:3], ys + dist[:, 3:4]], dim=1)
        bbox_pred = grid_deform_sampling(reg_bbox, head.reg_offset_module(feat))
        invalid = (bbox_pred[:, [0]] > bbox_pred[:, [2]]) | (bbox_pred[:, [1]] > bbox_pred[:, [3]])
        cls_scores.append(cls_score)
        bbox_preds.append(torch.where(invalid.expand_as(bbox_pred), reg_bbox, bbox_pred))
    return cls_scores, bbox_preds


class TOODGraph(nn.Module):
    """A TOOD detector from BGR pixels to its raw head outputs: the data preprocessor's
    channel flip and normalisation, backbone, neck, head. Input (N, 3, H, W) float32 BGR,
    0..255, padded by the caller with the BGR mean (normalised to 0, as mmdet pads after
    normalising). Outputs: ``scores_<l>`` then ``boxes_<l>`` for each level l."""

    def __init__(self, detector, mean, std, bgr_to_rgb: bool):
        super().__init__()
        self.backbone, self.neck, self.head = detector.backbone, detector.neck, detector.bbox_head
        self.register_buffer('mean', torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer('std', torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, images: Tensor):
        x = images[:, [2, 1, 0]] if self.bgr_to_rgb else images
        feats = self.neck(self.backbone((x - self.mean) / self.std))
        scores, boxes = tood_head_forward(self.head, feats)
        return (*scores, *boxes)
