"""AFMNet's test-time forward in standard ONNX operators (afmcli.models.afmnet.AFMNet.predict
up to the decoding), for export.

What the eager code does with host-side values or with operators that do not export is
rewritten here on the same modules and weights, each checked against the eager model:
- CARAFE (afm's pure-PyTorch kernel loops over rows) as k*k shifted slices, nearest upsampled
  and weighted by the reassembly mask (:func:`carafe_shifted`);
- the AFFM window mining with the images' valid sizes as a tensor (an input of the graph),
  the top-k loop unrolled (:func:`mine_windows_tensor`);
- window crops as one flat Gather (:func:`gather_windows_flat`);
- IRFI's ``roi_align`` of each window inside its own crop: the boxes are the same for every
  crop, so the RoI average is a fixed matrix on each axis (:func:`roi_align_matrix`), two MatMuls;
- the window cells' ownership (``scatter_reduce`` amax, ONNX ScatterElements max: opset 18).
The HD head's cells come out with their boxes in image coordinates (stride-4 units) and their
scores zeroed where a cell does not count, as ``WindowTOODHead.predict_by_cells`` reads them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from afmcli.deploy.graph import tood_head_forward

HD_STRIDE = 4


def carafe_shifted(features: Tensor, masks: Tensor, kernel_size: int, group_size: int, scale_factor: int) -> Tensor:
    """mmcv's CARAFE: out[c, y, x] = sum_t feat[c, y // s + i - r, x // s + j - r] * mask[g k^2 + t, y, x]."""
    n, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    r = (k - 1) // 2
    padded = F.pad(features, (r, k - 1 - r, r, k - 1 - r))
    masks = masks.reshape(n, g, 1, k * k, h * s, w * s)
    out = None
    for t in range(k * k):
        i, j = divmod(t, k)
        tap = F.interpolate(padded[:, :, i:i + h, j:j + w], scale_factor=s, mode='nearest')
        term = tap.reshape(n, g, c // g, h * s, w * s) * masks[:, :, :, t]
        out = term if out is None else out + term
    return out.reshape(n, c, h * s, w * s)


def upsample_on_priors_2x(maps: Tensor) -> Tensor:
    """afmcli.models.affm.upsample_on_priors from stride s to s / 2 on maps of a padded input
    (the finer map is exactly twice the size): align_corners on 2n - 1 points, last row and
    column repeated."""
    ih, iw = maps.shape[-2:]
    out = F.interpolate(maps, size=(ih * 2 - 1, iw * 2 - 1), mode='bilinear', align_corners=True)
    return F.pad(out, (0, 1, 0, 1), mode='replicate')


def mine_windows_tensor(score: Tensor, valid_hw: Tensor, topk: int, wh: int, ww: int, peak_kernel: int):
    """afmcli.models.windows.mine_windows with ``valid_hw`` an (N, 2) tensor: (rows (N*k, 5) b x0 y0 x1 y1, valid)."""
    n = score.shape[0]
    mass = F.avg_pool2d(score, (wh, ww), stride=1)[:, 0]
    ph, pw = mass.shape[-2:]
    inner = F.avg_pool2d(score, (max(1, wh // 2), max(1, ww // 2)), stride=1)[:, 0]
    rank = mass + 1e-3 * inner[:, wh // 4:wh // 4 + ph, ww // 4:ww // 4 + pw]
    ys = torch.arange(ph, device=score.device).view(1, -1, 1)
    xs = torch.arange(pw, device=score.device).view(1, 1, -1)
    limit_y = (valid_hw[:, 0] - wh).clamp(min=0).view(-1, 1, 1)
    limit_x = (valid_hw[:, 1] - ww).clamp(min=0).view(-1, 1, 1)
    rank = rank.masked_fill((ys > limit_y) | (xs > limit_x), float('-inf'))
    flat_index = torch.arange(ph * pw, device=score.device).view(1, -1)
    r = peak_kernel // 2
    picks, fresh = [], []
    for _ in range(topk):
        best, idx = rank.flatten(1).max(dim=1)
        y0, x0 = idx // pw, idx % pw
        picks.append(torch.stack([x0, y0, x0 + ww, y0 + wh], dim=-1))
        fresh.append(best > float('-inf'))
        near = ((ys - y0.view(-1, 1, 1)).abs() <= r) & ((xs - x0.view(-1, 1, 1)).abs() <= r)
        rank = torch.where(near, rank - 1e4, rank)
        rank = rank.flatten(1).masked_fill(flat_index == idx[:, None], float('-inf')).view(rank.shape)
    picks = torch.stack(picks, dim=1).reshape(-1, 4)
    batch = torch.arange(n, device=score.device).view(-1, 1).expand(n, topk).reshape(-1, 1)
    return torch.cat([batch, picks], dim=1), torch.stack(fresh, dim=1).reshape(-1)


def gather_windows_flat(feat: Tensor, origins: Tensor, batch: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """afmcli.models.windows.gather_windows as one Gather on the flattened map."""
    n, c, big_h, big_w = feat.shape
    ys = origins[:, 1:2] + torch.arange(h, device=feat.device)
    xs = origins[:, 0:1] + torch.arange(w, device=feat.device)
    inside = (((ys >= 0) & (ys < big_h))[:, :, None] & ((xs >= 0) & (xs < big_w))[:, None, :])[:, None].to(feat.dtype)
    index = (batch[:, None, None] * big_h + ys.clamp(0, big_h - 1)[:, :, None]) * big_w + xs.clamp(0, big_w - 1)[:, None]
    flat = feat.permute(0, 2, 3, 1).reshape(-1, c)
    crops = flat.index_select(0, index.reshape(-1)).reshape(-1, h, w, c).permute(0, 3, 1, 2)
    return crops * inside, inside


def roi_align_matrix(size: int, start: float, length: float, out: int) -> np.ndarray:
    """(out, size) weights of mmcv's roi_align (avg, aligned, sampling_ratio 0) along one axis
    for a box [start, start + length) in a map of ``size`` cells: each bin averages
    ceil(length / out) bilinear samples."""
    grid = math.ceil(length / out)
    bin_size = length / out
    weights = np.zeros((out, size))
    for p in range(out):
        for g in range(grid):
            y = start - 0.5 + p * bin_size + (g + 0.5) * bin_size / grid
            if y < -1.0 or y > size:
                continue
            y = max(y, 0.0)
            low = int(math.floor(y))
            if low >= size - 1:
                weights[p, size - 1] += 1.0 / grid
                continue
            frac = y - low
            weights[p, low] += (1 - frac) / grid
            weights[p, low + 1] += frac / grid
    return weights


def irfi_forward(irfi, crops: Tensor, rows: Tensor, valid: Tensor, k: int, wh: int, ww: int, margin: int,
                 inside: Tensor, context: Tensor, map_hw) -> Tensor:
    """afmcli.models.irfi.IRFI.forward with its roi_align as fixed matrices."""
    n = context.shape[0]
    ch, cw = crops.shape[-2:]
    ay = crops.new_tensor(roi_align_matrix(int(ch), margin, wh, irfi.roi_size))
    ax = crops.new_tensor(roi_align_matrix(int(cw), margin, ww, irfi.roi_size))
    roi_feats = torch.matmul(torch.matmul(ay, crops), ax.t())
    tokens = irfi.token(F.adaptive_avg_pool2d(irfi.reduce(roi_feats), 4).flatten(1))
    boxes = rows[:, 1:].to(crops.dtype)
    h, w = map_hw
    normalised = torch.stack([boxes[:, 0] / w, boxes[:, 1] / h, boxes[:, 2] / w, boxes[:, 3] / h], dim=1)
    tokens = tokens + irfi.pos_embed(normalised)
    x = torch.cat([irfi.global_token(context)[:, None], tokens.view(n, k, -1)], dim=1)
    padding = torch.cat([valid.new_zeros(n, 1), ~valid.view(n, k)], dim=1)
    x = irfi.norm1(x + irfi.attn(x, x, x, key_padding_mask=padding, need_weights=False)[0])
    x = irfi.norm2(x + irfi.ffn(x))
    scale, shift = irfi.modulation(x[:, 1:].reshape(n * k, -1)).chunk(2, dim=1)
    return crops * (1 + scale[..., None, None]) + shift[..., None, None] * inside


class AFMNetGraph(nn.Module):
    """An AFMNet (with CFPN or FPN, masks, AFFM windows, optional IRFI, HD head) from BGR pixels
    and the images' resized sizes (N, 2: height, width before padding) to the main head's raw
    outputs per level, then the HD head's cells (scores (N, P, C), zero where a cell does not
    count; boxes (N, P, 4) in stride-4 units, image coordinates) and the window cores
    (N, k, 4, stride-4 cells; empty where a slot is invalid)."""

    def __init__(self, detector, mean, std, bgr_to_rgb: bool):
        super().__init__()
        self.detector = detector
        self.register_buffer('mean', torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer('std', torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, images: Tensor, sizes: Tensor):
        d = self.detector
        x = images[:, [2, 1, 0]] if self.bgr_to_rgb else images
        c = d.backbone((x - self.mean) / self.std)
        c2, feats = c[0], list(d.neck(c))
        mask_logits = d.mask_estimator(feats[:2])
        feats[1] = d.affm.enhance_main(feats[1], mask_logits[1])
        main_scores, main_boxes = tood_head_forward(d.bbox_head, feats)
        p3 = feats[0]
        m_s = upsample_on_priors_2x(mask_logits[0].sigmoid())
        score = m_s if d.affm.test_score_from == 'mask' else \
            torch.maximum(m_s, upsample_on_priors_2x(main_scores[0].max(dim=1, keepdim=True).values))
        valid_hw = torch.div(sizes + HD_STRIDE - 1, HD_STRIDE, rounding_mode='floor')
        wh = ww = d.affm.window
        rows, valid = mine_windows_tensor(score.float(), valid_hw, d.affm.topk, wh, ww, d.affm.peak_kernel)
        k, margin = d.affm.topk, d.affm.margin
        origins = rows[:, 1:3] - margin
        crops, inside = self._p2_on_windows(c2, p3, rows, origins, wh, ww, margin)
        crops = crops * (1 + gather_windows_flat(m_s, origins, rows[:, 0], wh + 2 * margin, ww + 2 * margin)[0])
        if d.irfi is not None:
            context = (p3 * (1 + mask_logits[0].sigmoid())).mean(dim=(2, 3))
            crops = irfi_forward(d.irfi, crops, rows, valid, k, wh, ww, margin, inside, context, c2.shape[-2:])
        hd_scores, hd_boxes = tood_head_forward(d.hd_head, [crops])
        hd_boxes = hd_boxes[0] + origins.repeat(1, 2)[:, :, None, None].to(hd_boxes[0].dtype)
        owned = self._owned_cells(rows, valid, k, wh, ww, c2, valid_hw)
        # AFMNet.predict: the HD head's scores through its merge warm-up's factor
        scores = self._core(hd_scores[0], k, wh, ww, margin) * owned[..., None].to(hd_scores[0].dtype) \
            * d.hd_merge_ramp()
        boxes = self._core(hd_boxes, k, wh, ww, margin)
        cores = (rows[:, 1:] * valid[:, None]).reshape(-1, k, 4)
        return (*main_scores, *main_boxes, scores, boxes, cores)

    def _p2_on_windows(self, c2, p3, rows, origins, wh, ww, margin):
        """afmcli.models.necks.P2Feature.on_windows with the flat gathers."""
        p2 = self.detector.p2_neck
        h, w = wh + 2 * margin + 2, ww + 2 * margin + 2
        c2_crops, inside = gather_windows_flat(c2, origins - 1, rows[:, 0], h, w)
        start = origins - 1
        r = p2.upsample.reach
        source = torch.div(start, 2, rounding_mode='floor') - r
        p3_crops, p3_inside = gather_windows_flat(p3, source, rows[:, 0], -(-h // 2) + 1 + 2 * r, -(-w // 2) + 1 + 2 * r)
        up = p2.upsample.forward_in_map(p3_crops, p3_inside)
        up, _ = gather_windows_flat(up, start - 2 * source, torch.arange(up.shape[0]), h, w)
        merged = (p2.lateral_conv(c2_crops) + up) * inside
        inside = inside[..., 1:-1, 1:-1]
        return p2.fpn_conv(merged)[..., 1:-1, 1:-1] * inside, inside

    @staticmethod
    def _core(maps: Tensor, k: int, h: int, w: int, margin: int) -> Tensor:
        """afmcli.models.windows.core_cells."""
        d = maps.shape[1]
        core = maps[:, :, margin:margin + h, margin:margin + w]
        return core.reshape(-1, k, d, h * w).permute(0, 1, 3, 2).reshape(core.shape[0] // k, -1, d)

    @staticmethod
    def _owned_cells(rows, valid, k, h, w, c2, valid_hw) -> Tensor:
        """afmcli.models.windows.window_cells' ``counts`` (N, k*h*w) with tensor sizes."""
        big_h, big_w = c2.shape[-2:]
        m = rows.shape[0]
        dy, dx = torch.arange(h), torch.arange(w)
        ys, xs = rows[:, 2:3] + dy, rows[:, 1:2] + dx
        flat = ys[:, :, None] * big_w + xs[:, None, :]
        centrality = torch.minimum(torch.minimum(dy, h - 1 - dy)[:, None], torch.minimum(dx, w - 1 - dx)[None, :])
        key = centrality * m + (m - 1 - torch.arange(m))[:, None, None]
        key = torch.where(valid[:, None, None], key, torch.full_like(key, -1))
        image_flat = rows[:, 0, None, None] * (big_h * big_w) + flat
        best = torch.full((c2.shape[0] * big_h * big_w,), -1, dtype=key.dtype)
        best = best.scatter_reduce(0, image_flat.flatten(), key.flatten(), 'amax')
        owned = (best[image_flat] == key) & (key >= 0)
        limits = valid_hw[:, None].expand(-1, k, 2).reshape(-1, 2)
        in_image = (ys < limits[:, 0:1])[:, :, None] & (xs < limits[:, 1:2])[:, None]
        return (owned & in_image).reshape(-1, k * h * w)
