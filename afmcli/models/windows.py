"""Fixed-size windows on the stride-4 map: mining, cropping, and moving boxes in and out.

A window is a row (b, x0, y0, x1, y1) of an (M, 5) long tensor: the image b of the batch
and its cells (x1 exclusive), the RoI layout of mmcv's roi_align. Rows are image-major.
All windows of a batch have one size, so their crops stack into an (M, C, h, w) batch that
the HD head treats as M small images; an image may have fewer windows than top-k (a small
image batched with large ones has room for only one).

A crop is its window plus `margin` cells of context on each side (zeros outside the map):
the head's convolutions see real neighbours at the window's edge, and the margin's priors
are ignored (training: `valid_box` in the window's img_meta, read by `WindowTOODHead`;
test: `suppress_margin`). A ground-truth box belongs to every window whose core holds its
centre and is taught whole, in crop pixels.
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
    valid (unpadded) cells `valid_hw[i]` where they fit; an image with fewer distinct
    positions than `topk` (valid area barely larger than a window) gets fewer windows,
    never the same one twice. Returns (M, 5) long rows (b, x0, y0, x1, y1), image-major.
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
    picks, fresh = [], []
    for _ in range(min(topk, ph * pw)):
        best, idx = rank.flatten(1).max(dim=1)
        y0, x0 = idx // pw, idx % pw
        picks.append(torch.stack([x0, y0, x0 + ww, y0 + wh], dim=-1))
        fresh.append(best > float('-inf'))  # -inf: every allowed position is taken already
        near = ((ys - y0.view(-1, 1, 1)).abs() <= r) & ((xs - x0.view(-1, 1, 1)).abs() <= r)
        rank = torch.where(near, rank - 1e4, rank)
        rank.view(n, -1).scatter_(1, idx[:, None], float('-inf'))  # never the same window twice
    picks, fresh = torch.stack(picks, dim=1), torch.stack(fresh, dim=1)  # (N, k, 4), (N, k)
    batch = torch.arange(n, device=score.device).view(-1, 1).expand_as(fresh)
    return torch.cat([batch[fresh][:, None], picks[fresh]], dim=1)


def full_windows(n: int, feat_hw: Sequence[int], device=None) -> Tensor:
    """One window per image covering the whole map: the dense HD head (no AFFM)."""
    h, w = int(feat_hw[0]), int(feat_hw[1])
    rows = torch.tensor([[0, 0, 0, w, h]], device=device).repeat(n, 1)
    rows[:, 0] = torch.arange(n, device=device)
    return rows


def crop_windows(feat: Tensor, windows: Tensor, margin: int = 0) -> Tensor:
    """Stack the crops (window + `margin` cells each side, zeros outside) of feat (N, C, H, W)
    into (M, C, wh + 2 margin, ww + 2 margin)."""
    if margin:
        feat = F.pad(feat, (margin, margin, margin, margin))
    crops = [feat[b, :, y0:y1 + 2 * margin, x0:x1 + 2 * margin]  # padded index = cell + margin
             for b, x0, y0, x1, y1 in windows.tolist()]
    return torch.stack(crops)


def window_metas(windows: Tensor, img_metas: Sequence[dict], stride: int, margin: int = 0) -> list[dict]:
    """img_meta of each crop seen as an image (pixels of the crop).

    `valid_box` is the window proper (the margin is context only) and `scale_factor` the
    image's, so that the head's test-time `min_bbox_size` applies in original pixels.
    """
    metas = []
    m = margin * stride
    for b, x0, y0, x1, y1 in windows.tolist():
        wh, ww = (y1 - y0) * stride, (x1 - x0) * stride
        pad = (wh + 2 * m, ww + 2 * m)
        metas.append(dict(img_shape=pad, pad_shape=pad, batch_input_shape=pad,
                          scale_factor=tuple(img_metas[b].get('scale_factor', (1.0, 1.0))),
                          valid_box=(m, m, m + ww, m + wh)))
    return metas


def instances_to_windows(gt_instances: Sequence[InstanceData], windows: Tensor, stride: int,
                         margin: int = 0) -> list[InstanceData]:
    """Ground truth of each crop in crop pixels: the boxes whose centre lies in the window
    proper, whole (not clipped: a cut-off box would teach partial objects)."""
    out = []
    for b, x0, y0, x1, y1 in windows.tolist():
        gt = gt_instances[b]
        boxes = gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor') else gt.bboxes
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        keep = (cx >= x0 * stride) & (cx < x1 * stride) & (cy >= y0 * stride) & (cy < y1 * stride)
        origin = boxes.new_tensor([x0 - margin, y0 - margin] * 2) * stride
        out.append(InstanceData(bboxes=boxes[keep] - origin, labels=gt.labels[keep]))
    return out


def suppress_margin(cls_scores: Tensor, margin: int) -> Tensor:
    """Scores (M, C, h, w) with the margin cells zeroed: they predict nothing at test time."""
    if not margin:
        return cls_scores
    keep = torch.zeros_like(cls_scores[:1, :1])
    keep[..., margin:-margin, margin:-margin] = 1
    return cls_scores * keep


def results_from_windows(results: Sequence[InstanceData], windows: Tensor, stride: int,
                         img_metas: Sequence[dict], rescale: bool, margin: int = 0) -> list[InstanceData]:
    """Per-crop detections -> per-image detections: shifted by the crop origin, clipped to the
    image. With `rescale` the crops' boxes are in original pixels already (the head rescaled
    them with the image's scale_factor), and so is the result."""
    parts = [[] for _ in img_metas]
    for res, (b, x0, y0, _, _) in zip(results, windows.tolist()):
        sx, sy = img_metas[b]['scale_factor'] if rescale else (1.0, 1.0)
        shift = res.bboxes.new_tensor([(x0 - margin) * stride / sx, (y0 - margin) * stride / sy] * 2)
        parts[b].append(InstanceData(bboxes=res.bboxes + shift, scores=res.scores, labels=res.labels))
    merged = []
    for meta, part in zip(img_metas, parts):
        res = InstanceData.cat(part)
        sx, sy = meta['scale_factor'] if rescale else (1.0, 1.0)
        img_h, img_w = meta['img_shape'][:2]
        res.bboxes[:, 0::2] = res.bboxes[:, 0::2].clamp(0, img_w / sx)
        res.bboxes[:, 1::2] = res.bboxes[:, 1::2].clamp(0, img_h / sy)
        merged.append(res)
    return merged
