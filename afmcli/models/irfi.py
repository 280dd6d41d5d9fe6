"""IRFI: RoI feature interaction between the mined windows of one image."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import roi_align
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from .windows import Windows


@MODELS.register_module()
class IRFI(BaseModule):
    """Windows exchange context through self-attention, then modulate their own features.

    Per image: each window is RoIAligned (from its crop of P2') to `roi_size`^2, encoded to a token
    (1x1 reduce, 4x4 pool, linear: keeps a coarse layout, unlike a plain mean), plus an
    embedding of its box (normalised to the map). A global token (the image's context, see
    AFMNet) joins, the k+1 tokens pass one transformer layer, and each window token yields a
    channel-wise (scale, shift): crop * (1 + scale) + shift. The last layer starts at zero,
    so IRFI starts as the identity and cannot hurt a head initialised from COCO weights.
    """

    def __init__(self, in_channels: int = 256, roi_size: int = 16, reduce_channels: int = 64,
                 num_heads: int = 8, ffn_ratio: int = 2, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.roi_size = roi_size
        self.reduce = nn.Conv2d(in_channels, reduce_channels, 1)
        self.token = nn.Linear(reduce_channels * 16, in_channels)
        self.global_token = nn.Linear(in_channels, in_channels)
        self.pos_embed = nn.Sequential(nn.Linear(4, in_channels), nn.ReLU(inplace=True),
                                       nn.Linear(in_channels, in_channels))
        self.attn = nn.MultiheadAttention(in_channels, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(in_channels)
        self.ffn = nn.Sequential(nn.Linear(in_channels, in_channels * ffn_ratio), nn.ReLU(inplace=True),
                                 nn.Linear(in_channels * ffn_ratio, in_channels))
        self.norm2 = nn.LayerNorm(in_channels)
        self.modulation = nn.Linear(in_channels, 2 * in_channels)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, crops: Tensor, windows: Windows, inside: Tensor, context: Tensor,
                map_hw: Sequence[int]) -> Tensor:
        """crops (N*k, C, h + 2 margin, w + 2 margin) of the stride-4 map P2', `windows` their k
        slots per image, inside (N*k, 1, ...) 1 where a crop cell lies in the map, context (N, C)
        the image's global feature, map_hw the map's size. Invalid slots are masked out of the
        attention (k + 1 token slots per image, so no shape depends on the data). The shift
        applies inside the map only: beyond it the crop stays the zeros it was."""
        n, k = context.shape[0], windows.k
        h, w = map_hw
        boxes = windows.rows[:, 1:].to(crops.dtype)
        # each window RoIAligned from its own crop, where it starts at (margin, margin)
        (wh, ww), m = windows.size, windows.margin
        # (no tensor from host values: on a GPU that copy waits for the device)
        own = torch.arange(len(boxes), device=crops.device, dtype=crops.dtype)[:, None]
        local = torch.cat([own, *(own.new_full((len(own), 1), v) for v in (m, m, m + ww, m + wh))], dim=1)
        # (mmcv's kernel reads the memory as NCHW: a channels-last input would be misread)
        roi_feats = roi_align(crops.contiguous(), local, self.roi_size, 1.0, 0, 'avg', True)
        tokens = self.token(F.adaptive_avg_pool2d(self.reduce(roi_feats), 4).flatten(1))
        normalised = torch.stack([boxes[:, 0] / w, boxes[:, 1] / h, boxes[:, 2] / w, boxes[:, 3] / h], dim=1)
        tokens = tokens + self.pos_embed(normalised)
        x = torch.cat([self.global_token(context)[:, None], tokens.view(n, k, -1)], dim=1)
        padding = torch.cat([windows.valid.new_zeros(n, 1), ~windows.valid.view(n, k)], dim=1)
        x = self.norm1(x + self.attn(x, x, x, key_padding_mask=padding, need_weights=False)[0])
        x = self.norm2(x + self.ffn(x))
        scale, shift = self.modulation(x[:, 1:].reshape(n * k, -1)).chunk(2, dim=1)
        return crops * (1 + scale[..., None, None]) + shift[..., None, None] * inside
