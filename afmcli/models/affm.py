"""AFFM: adaptive fine-grained feature mining, driven by the FPD masks."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from .windows import mine_windows, window_size


@MODELS.register_module()
class AFFM(BaseModule):
    """Mask-guided enhancement and top-k window mining (no parameters of its own).

    - `enhance(feat, logits)`: feat * (1 + m), m = sigmoid(logits) resized to feat: P2' from
      the small mask, and the main head's P4 from the large mask. Objects are amplified, the
      rest is kept (the factor is >= 1), so a wrong mask cannot erase features.
    - `mine(score, valid_hw)`: the `topk` windows of `window` x `window` stride-4 cells with
      the most mask mass; peaks within `peak_kernel` cells suppress each other (default:
      window + 1, so two windows overlap by at most half a window along one axis). When the
      k windows would cover more cells than the map itself, the HD head runs dense instead.
      Each window is cropped with `margin` cells of context on each side; the margin's
      priors are ignored (see `afmcli.models.windows`).
    - `training_score(m, gt_small)`: windows during training come from the ground-truth
      small mask plus the prediction, so positives are always present and the predicted
      false positives are mined as hard negatives.
    """

    def __init__(self, topk: int = 13, window: int = 32, peak_kernel: int | None = None,
                 margin: int = 2, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.topk = topk
        self.window = window
        self.margin = margin
        self.peak_kernel = peak_kernel or (window // 2) * 2 + 1

    @staticmethod
    def enhance(feat: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(feat * (1 + m), m) with m the sigmoid mask bilinearly resized to feat."""
        m = AFFM.mask_at(logits, feat.shape[-2:])
        return feat * (1 + m), m

    @staticmethod
    def mask_at(logits: Tensor, hw: Sequence[int]) -> Tensor:
        """The sigmoid mask bilinearly resized to `hw`."""
        m = logits.sigmoid()
        if tuple(m.shape[-2:]) != tuple(hw):
            m = F.interpolate(m, size=tuple(hw), mode='bilinear', align_corners=False)
        return m

    @staticmethod
    def training_score(m: Tensor, gt_small: Tensor) -> Tensor:
        """Mining score for training: GT small mask (resized to m) + detached prediction."""
        gt = F.interpolate(gt_small, size=m.shape[-2:], mode='nearest')
        return gt + m.detach()

    def windows_cheaper(self, feat_hw: Sequence[int]) -> bool:
        """Whether the k windows have fewer cells than the whole map (else go dense)."""
        wh, ww = window_size(feat_hw, self.window)
        return self.topk * wh * ww < int(feat_hw[0]) * int(feat_hw[1])

    def mine(self, score: Tensor, valid_hw: Sequence[Sequence[int]]) -> Tensor:
        """(M, 5) windows (b, x0, y0, x1, y1) in cells, at most `topk` per image."""
        return mine_windows(score, valid_hw, self.topk, self.window, self.peak_kernel)
