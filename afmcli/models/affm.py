"""AFFM: adaptive fine-grained feature mining, driven by the FPD masks."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from .windows import Windows, mine_windows, window_size


@MODELS.register_module()
class AFFM(BaseModule):
    """Mask-guided enhancement and top-k window mining.

    - `enhance(feat, logits)`: feat * (1 + m), m = sigmoid(logits) resized to feat: P2' from
      the small mask. Objects are amplified, the rest is kept (the factor is >= 1), so a wrong
      mask cannot erase features.
    - `enhance_main(feat, logits)`: the main head's P4 from the large mask, feat * (1 + g m)
      with `main_gate` g a learned scalar that starts at `main_gate_init` (0, as the configs
      set it: the main path starts as the identity, so a detector started from TOOD predicts
      as TOOD; the gate's gradient is not zero, so the modulation learns its way in). None
      (the default, round 3's model): no gate, g = 1.
    - `mine(score, valid_hw, training)`: the `topk` windows (`topk_train` in training) of
      `window` x `window` stride-4 cells with the most mask mass; peaks within `peak_kernel`
      cells suppress each other (default: window + 1, so two windows overlap by at most half
      a window along one axis). When the k windows would cover more cells than the map
      itself, the HD head runs dense instead. Each window is cropped with `margin` cells of
      context on each side (see `afmcli.models.windows`).
    - `training_score(m, gt_small)`: windows during training come from the ground-truth
      small mask plus the prediction, so positives are always present and the predicted
      false positives are mined as hard negatives.
    - `test_score(m, main_scores)`: at test time the mask, or with
      ``test_score='mask_or_main'`` the larger of the mask and the main head's stride-8
      score (its best class), so that objects the mask misses but the main head half-sees
      get a window.
    """

    TEST_SCORES = ('mask', 'mask_or_main')

    def __init__(self, topk: int = 13, window: int = 32, peak_kernel: int | None = None,
                 margin: int = 2, topk_train: int | None = None, test_score: str = 'mask',
                 main_gate_init: float | None = None, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.main_gate = None if main_gate_init is None else nn.Parameter(torch.full((1,), float(main_gate_init)))
        if test_score not in self.TEST_SCORES:
            raise ValueError(f"AFFM: test_score {test_score!r} is not one of {', '.join(self.TEST_SCORES)}")
        self.topk = topk
        self.topk_train = topk_train or topk
        self.window = window
        self.margin = margin
        self.peak_kernel = peak_kernel or (window // 2) * 2 + 1
        self.test_score_from = test_score

    @staticmethod
    def enhance(feat: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(feat * (1 + m), m) with m the sigmoid mask resized to feat."""
        m = AFFM.mask_at(logits, feat.shape[-2:])
        return feat * (1 + m), m

    def enhance_main(self, feat: Tensor, logits: Tensor) -> Tensor:
        """The main head's level modulated by its mask through the gate: feat * (1 + g m)."""
        m = AFFM.mask_at(logits, feat.shape[-2:])
        return feat * (1 + (m if self.main_gate is None else self.main_gate.to(m.dtype) * m))

    @staticmethod
    def mask_at(logits: Tensor, hw: Sequence[int]) -> Tensor:
        """The sigmoid mask resized to `hw`, `upsample_on_priors`."""
        return upsample_on_priors(logits.sigmoid(), hw)

    @staticmethod
    def training_score(m: Tensor, gt_small: Tensor) -> Tensor:
        """Mining score for training: GT small mask (resized to m) + detached prediction."""
        return upsample_on_priors(gt_small, m.shape[-2:]) + m.detach()

    def test_score(self, m: Tensor, main_scores: Tensor | None) -> Tensor:
        """Mining score at test time: the mask, or max(mask, main head's best class score)."""
        if self.test_score_from == 'mask' or main_scores is None:
            return m
        return torch.maximum(m, upsample_on_priors(main_scores.max(dim=1, keepdim=True).values, m.shape[-2:]))

    def windows_cheaper(self, feat_hw: Sequence[int], training: bool = False) -> bool:
        """Whether the k windows have fewer cells than the whole map (else go dense)."""
        wh, ww = window_size(feat_hw, self.window)
        return (self.topk_train if training else self.topk) * wh * ww < int(feat_hw[0]) * int(feat_hw[1])

    def mine(self, score: Tensor, valid_hw: Sequence[Sequence[int]], training: bool = False) -> Windows:
        """Windows (k slots per image, `Windows`) of the score map."""
        return mine_windows(score, valid_hw, self.topk_train if training else self.topk, self.window,
                            self.peak_kernel, self.margin)


def upsample_on_priors(maps: Tensor, hw: Sequence[int]) -> Tensor:
    """Resize (N, C, h, w) maps of stride s to `hw` cells of a finer stride, bilinearly, with
    cell j of every map read at the point j * s where mmdet's priors sit (not at the cell
    centre (j + 0.5) * s that F.interpolate's align_corners=False assumes): at 2x, output
    cell 2j is input cell j and 2j + 1 the mean of cells j and j + 1; the last row and column
    repeat the input's last. Same size: unchanged."""
    h, w = int(hw[0]), int(hw[1])
    ih, iw = maps.shape[-2:]
    if (ih, iw) == (h, w):
        return maps
    fy, fx = max(1, round(h / ih)), max(1, round(w / iw))
    # align_corners=True on (n-1)*f+1 points puts output f*j exactly on input j
    out = F.interpolate(maps, size=((ih - 1) * fy + 1, (iw - 1) * fx + 1), mode='bilinear', align_corners=True)
    out = F.pad(out, (0, max(0, w - out.shape[-1]), 0, max(0, h - out.shape[-2])), mode='replicate')
    return out[..., :h, :w]
