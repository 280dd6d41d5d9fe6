"""Fixed-size windows on the stride-4 map: mining, cropping, and their cells per image.

A batch's windows are `Windows`: k slots per image, rows (b, x0, y0, x1, y1) of an (N*k, 5)
long tensor (image-major, the RoI layout of mmcv's roi_align; x1 exclusive) and a `valid`
flag per slot: an image with room for fewer than k distinct windows (a small image batched
with large ones) has invalid slots, computed and ignored. Fixed slots keep every shape known
on the host, so nothing here waits for the device (no boolean indexing, no `.tolist()`).

A crop is its window plus `margin` cells of context on each side (zeros outside the map):
the head's convolutions see real neighbours at the window's edge. Training targets and
predictions use only the windows' core cells, gathered per image in image coordinates
(`window_cells`): one assignment per image, never per window.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class Windows(NamedTuple):
    """k window slots per image: rows (N*k, 5) long (b, x0, y0, x1, y1), valid (N*k,) bool,
    every window `size` (h, w) cells, cropped with `margin` cells of context."""
    rows: Tensor
    valid: Tensor
    k: int
    size: tuple[int, int]
    margin: int

    @property
    def origins(self) -> Tensor:
        """(N*k, 2) x, y of each crop's first cell (the window's minus the margin)."""
        return self.rows[:, 1:3] - self.margin


def window_size(feat_hw: Sequence[int], window: int) -> tuple[int, int]:
    """(height, width) of the windows on a feature map: `window` clipped to the map."""
    return min(window, int(feat_hw[0])), min(window, int(feat_hw[1]))


@torch.no_grad()
def mine_windows(score: Tensor, valid_hw: Sequence[Sequence[int]], topk: int, window: int,
                 peak_kernel: int, margin: int = 0) -> Windows:
    """Top-k windows of `score` (N, 1, H, W) by mass, chosen greedily with suppression.

    The mass of every window position is one avg-pool. Each pick takes the heaviest position
    and suppresses the positions within `peak_kernel // 2` cells of it, so windows overlap
    little; once all are suppressed, the heaviest suppressed ones fill up. Ties (a binary
    ground-truth mask makes plateaus) go to the window whose central half holds the most
    mass, so objects sit in the middle of their window. Windows stay inside each image's
    valid (unpadded) cells `valid_hw[i]` where they fit; an image with fewer distinct
    positions than `topk` (valid area barely larger than a window) gets invalid slots,
    never the same window twice.
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
    outside = torch.stack([(ys[0] > max(0, int(vh) - wh)) | (xs[0] > max(0, int(vw) - ww)) for vh, vw in valid_hw])
    rank = rank.masked_fill(outside, float('-inf'))
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
    k = len(picks)
    picks = torch.stack(picks, dim=1).view(n * k, 4)
    batch = torch.arange(n, device=score.device).repeat_interleave(k, output_size=n * k)
    return Windows(torch.cat([batch[:, None], picks], dim=1), torch.stack(fresh, dim=1).view(-1), k,
                   (wh, ww), margin)


def full_windows(n: int, feat_hw: Sequence[int], device=None) -> Windows:
    """One window per image covering the whole map, no margin: the dense HD head (no AFFM)."""
    h, w = int(feat_hw[0]), int(feat_hw[1])
    rows = torch.tensor([[0, 0, 0, w, h]], device=device).repeat(n, 1)
    rows[:, 0] = torch.arange(n, device=device)
    return Windows(rows, torch.ones(n, dtype=torch.bool, device=device), 1, (h, w), 0)


def gather_windows(feat: Tensor, origins: Tensor, batch: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Crops of feat (N, C, H, W) in one gather: crop i is image batch[i]'s cells from
    origins[i] (x, y), `size` (h, w) cells, zeros outside the map.

    Returns (crops (M, C, h, w), inside (M, 1, h, w) in feat's dtype: 1 where the cell lies
    in the map). Its backward is one scatter-add into the map.
    """
    _, _, H, W = feat.shape
    h, w = int(size[0]), int(size[1])
    ys = origins[:, 1:2] + torch.arange(h, device=feat.device)  # (M, h)
    xs = origins[:, 0:1] + torch.arange(w, device=feat.device)  # (M, w)
    inside = (((ys >= 0) & (ys < H))[:, :, None] & ((xs >= 0) & (xs < W))[:, None, :])[:, None].to(feat.dtype)
    # advanced indices around a slice: the result is (M, h, w, C); contiguous NCHW for mmcv's
    # ops (roi_align reads its input as dense NCHW)
    crops = feat[batch[:, None, None], :, ys.clamp(0, H - 1)[:, :, None], xs.clamp(0, W - 1)[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous().mul_(inside), inside


def crop_windows(feat: Tensor, windows: Windows, extra: int = 0) -> tuple[Tensor, Tensor]:
    """`gather_windows` of each window with its margin (plus `extra` cells each side)."""
    m = windows.margin + extra
    h, w = windows.size
    return gather_windows(feat, windows.origins - extra, windows.rows[:, 0], (h + 2 * m, w + 2 * m))


def window_cells(windows: Windows, map_hw: Sequence[int], valid_hw: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """The core cells of each image's window slots, in slot order: (index y * W + x of each
    cell in the map (N, k*h*w) long, whether the cell counts (N, k*h*w) bool).

    A cell counts when its slot is valid, it lies in the image's valid (unpadded) cells
    `valid_hw[i]`, and it belongs to this window: where windows overlap, a cell belongs to
    the one in which it lies most centrally (ties: the earlier pick), so that every cell of
    an image is trained and predicted once.
    """
    rows, k, (h, w) = windows.rows, windows.k, windows.size
    H, W = int(map_hw[0]), int(map_hw[1])
    m, device = rows.shape[0], rows.device
    dy, dx = torch.arange(h, device=device), torch.arange(w, device=device)
    ys, xs = rows[:, 2:3] + dy, rows[:, 1:2] + dx  # (M, h), (M, w)
    flat = ys[:, :, None] * W + xs[:, None, :]  # (M, h, w)
    centrality = torch.minimum(torch.minimum(dy, h - 1 - dy)[:, None], torch.minimum(dx, w - 1 - dx)[None, :])
    key = centrality * m + (m - 1 - torch.arange(m, device=device))[:, None, None]
    key = torch.where(windows.valid[:, None, None], key, torch.full_like(key, -1))
    image_flat = rows[:, 0, None, None] * (H * W) + flat
    best = torch.full((m // k * H * W,), -1, dtype=key.dtype, device=device)
    best.scatter_reduce_(0, image_flat.flatten(), key.flatten(), 'amax')
    owned = (best[image_flat] == key) & (key >= 0)
    in_image = torch.cat([(ys[i * k:(i + 1) * k] < int(vh))[:, :, None] & (xs[i * k:(i + 1) * k] < int(vw))[:, None]
                          for i, (vh, vw) in enumerate(valid_hw)])
    n = m // k
    return flat.view(n, k * h * w), (owned & in_image).view(n, k * h * w)


def core_cells(crop_maps: Tensor, windows: Windows) -> Tensor:
    """(M, D, h + 2 margin, w + 2 margin) per-crop maps -> (N, k*h*w, D): each image's core
    cells in the order of `window_cells`."""
    m, d = crop_maps.shape[:2]
    (h, w), mg = windows.size, windows.margin
    core = crop_maps[:, :, mg:mg + h, mg:mg + w]
    return core.reshape(m // windows.k, windows.k, d, h * w).permute(0, 1, 3, 2).reshape(m // windows.k, -1, d)
