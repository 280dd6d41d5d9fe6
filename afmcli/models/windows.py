"""Fixed-size windows on the stride-4 map: mining, cropping, and moving boxes in and out.

A window is (x0, y0, x1, y1) in feature cells (integers, x1 exclusive). All windows of a
batch have one size, so their crops stack into a (N*k, C, wh, ww) batch that the HD head
treats as N*k small images.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor


def window_size(feat_hw: Sequence[int], window: int) -> tuple[int, int]:
    """(height, width) of the windows on a feature map: `window` clipped to the map."""
    return min(window, int(feat_hw[0])), min(window, int(feat_hw[1]))


@torch.no_grad()
def mine_windows(score: Tensor, valid_hw: Sequence[Sequence[int]], topk: int, window: int,
                 peak_kernel: int) -> Tensor:
    """Top-k windows of `score` (N, 1, H, W) by mass, chosen greedily with suppression.

    The mass of every window position is one avg-pool. Each pick takes the heaviest position
    and suppresses the positions within `peak_kernel // 2` cells of it, so windows overlap
    little; once all are suppressed, the heaviest suppressed ones fill up. Ties (a binary
    ground-truth mask makes plateaus) go to the window whose central half holds the most
    mass, so objects sit in the middle of their window. Windows stay inside each image's
    valid (unpadded) cells `valid_hw[i]` where they fit. Returns (N, k, 4) long cells.
    """
    n, _, h, w = score.shape
    wh, ww = window_size((h, w), window)
    score = score.float()
    mass = F.avg_pool2d(score, (wh, ww), stride=1)[:, 0]  # top-left positions inside the map
    ph, pw = mass.shape[-2:]
    inner = F.avg_pool2d(score, (max(1, wh // 2), max(1, ww // 2)), stride=1)[:, 0]
    rank = mass + 1e-3 * inner[:, wh // 4:wh // 4 + ph, ww // 4:ww // 4 + pw]
    ys = torch.arange(ph, device=score.device).view(1, -1, 1)
    xs = torch.arange(pw, device=score.device).view(1, 1, -1)
    for i, (vh, vw) in enumerate(valid_hw):
        outside = (ys[0] > max(0, int(vh) - wh)) | (xs[0] > max(0, int(vw) - ww))
        rank[i][outside] = float('-inf')
    r = peak_kernel // 2
    picks = []
    for _ in range(min(topk, ph * pw)):
        idx = rank.flatten(1).argmax(dim=1)
        y0, x0 = idx // pw, idx % pw
        picks.append(torch.stack([x0, y0, x0 + ww, y0 + wh], dim=-1))
        near = ((ys - y0.view(-1, 1, 1)).abs() <= r) & ((xs - x0.view(-1, 1, 1)).abs() <= r)
        rank = torch.where(near, rank - 1e4, rank)
        rank.view(n, -1).scatter_(1, idx[:, None], float('-inf'))  # never the same window twice
    return torch.stack(picks, dim=1)


def full_windows(n: int, feat_hw: Sequence[int], device=None) -> Tensor:
    """One window per image covering the whole map: the dense HD head (no AFFM)."""
    h, w = int(feat_hw[0]), int(feat_hw[1])
    return torch.tensor([0, 0, w, h], device=device).repeat(n, 1, 1)


def crop_windows(feat: Tensor, windows: Tensor) -> Tensor:
    """Stack the window crops of feat (N, C, H, W) into (N*k, C, wh, ww), image-major."""
    crops = [feat[i, :, y0:y1, x0:x1]
             for i, per_image in enumerate(windows.tolist())
             for x0, y0, x1, y1 in per_image]
    return torch.stack(crops)


def window_metas(windows: Tensor, img_metas: Sequence[dict], stride: int) -> list[dict]:
    """img_meta of each window seen as an image: its size in pixels, the part inside the image."""
    metas = []
    for per_image, meta in zip(windows.tolist(), img_metas):
        img_h, img_w = meta['img_shape'][:2]
        for x0, y0, x1, y1 in per_image:
            pad = ((y1 - y0) * stride, (x1 - x0) * stride)
            inside = (max(1, min(pad[0], img_h - y0 * stride)), max(1, min(pad[1], img_w - x0 * stride)))
            metas.append(dict(img_shape=inside, pad_shape=pad, batch_input_shape=pad))
    return metas


def instances_to_windows(gt_instances: Sequence[InstanceData], windows: Tensor, stride: int,
                         min_visible: float = 0.5) -> list[InstanceData]:
    """Ground truth of each window in window pixels: shifted, clipped, and kept when at least
    `min_visible` of a box's area lies inside the window (cut-off objects are not taught)."""
    out = []
    for gt, per_image in zip(gt_instances, windows):
        boxes, labels = gt.bboxes, gt.labels
        boxes = boxes.tensor if hasattr(boxes, 'tensor') else boxes
        area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
        for x0, y0, x1, y1 in (per_image * stride).tolist():
            shifted = boxes - boxes.new_tensor([x0, y0, x0, y0])
            clipped = torch.stack([shifted[:, 0].clamp(0, x1 - x0), shifted[:, 1].clamp(0, y1 - y0),
                                   shifted[:, 2].clamp(0, x1 - x0), shifted[:, 3].clamp(0, y1 - y0)], 1)
            cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
            keep = (cw > 0) & (ch > 0) & (cw * ch >= min_visible * area)
            out.append(InstanceData(bboxes=clipped[keep], labels=labels[keep]))
    return out


def results_from_windows(results: Sequence[InstanceData], windows: Tensor, stride: int,
                         img_metas: Sequence[dict], rescale: bool) -> list[InstanceData]:
    """Per-window detections (window pixels) -> per-image detections (image, or original, pixels).

    Boxes are shifted by the window origin, clipped to the image, and divided by the
    image's scale_factor when `rescale`.
    """
    k = windows.shape[1]
    merged = []
    for i, meta in enumerate(img_metas):
        parts = []
        for j, (x0, y0, _, _) in enumerate((windows[i] * stride).tolist()):
            res = results[i * k + j]
            bboxes = res.bboxes + res.bboxes.new_tensor([x0, y0, x0, y0])
            parts.append(InstanceData(bboxes=bboxes, scores=res.scores, labels=res.labels))
        res = InstanceData.cat(parts)
        img_h, img_w = meta['img_shape'][:2]
        res.bboxes[:, 0::2] = res.bboxes[:, 0::2].clamp(0, img_w)
        res.bboxes[:, 1::2] = res.bboxes[:, 1::2].clamp(0, img_h)
        if rescale:
            sx, sy = meta['scale_factor']
            res.bboxes = res.bboxes / res.bboxes.new_tensor([sx, sy, sx, sy])
        merged.append(res)
    return merged
