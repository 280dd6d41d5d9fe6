"""CFPN (FPN with CARAFE top-down upsampling) and the stride-4 P2 feature of the HD head."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.ops.carafe import CARAFEPack
from mmdet.models.necks import FPN_CARAFE
from mmdet.registry import MODELS
from mmengine.model import BaseModule, xavier_init
from torch import Tensor

from .carafe import CARAFEUpsample
from .windows import crop_windows


@MODELS.register_module()
class CARAFEFPN(FPN_CARAFE):
    """mmdet's FPN_CARAFE whose CARAFE upsamplers also run on CPU.

    Same arguments and state_dict keys as FPN_CARAFE, so its checkpoints load unchanged;
    only the CARAFEPack modules are swapped for `CARAFEUpsample` (GPU: mmcv kernel).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for i, module in enumerate(self.upsample_modules):
            if isinstance(module, CARAFEPack):
                self.upsample_modules[i] = CARAFEUpsample(
                    channels=module.channels, scale_factor=module.scale_factor,
                    up_kernel=module.up_kernel, up_group=module.up_group,
                    encoder_kernel=module.encoder_kernel,
                    encoder_dilation=module.encoder_dilation,
                    compressed_channels=module.compressed_channels)


@MODELS.register_module()
class P2Feature(BaseModule):
    """Stride-4 map for the HD head: 1x1 lateral on C2 + CARAFE-upsampled P3, then 3x3 conv.

    It mirrors one top-down FPN step, so P2 carries P3's semantics at C2's resolution.
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 256,
                 upsample_cfg: dict = dict(type='carafe_any', up_kernel=5, up_group=1,
                                           encoder_kernel=3, encoder_dilation=1,
                                           compressed_channels=64),
                 norm_cfg: dict | None = None, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.lateral_conv = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg,
                                       bias=norm_cfg is None, act_cfg=None)
        self.fpn_conv = ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                                   bias=norm_cfg is None, act_cfg=None)
        up_cfg = dict(upsample_cfg)
        if up_cfg['type'] in ('carafe', 'carafe_any'):
            up_cfg.pop('type')
            self.upsample = CARAFEUpsample(channels=out_channels, scale_factor=2, **up_cfg)
        else:
            self.upsample = nn.Upsample(scale_factor=2, mode=up_cfg['type'])

    def init_weights(self) -> None:
        super().init_weights()
        for m in (self.lateral_conv.conv, self.fpn_conv.conv):
            xavier_init(m, distribution='uniform')
        if isinstance(self.upsample, CARAFEPack):
            self.upsample.init_weights()

    def forward(self, c2: Tensor, p3: Tensor) -> Tensor:
        return self.fpn_conv(self.merge(c2, p3))

    def merge(self, c2: Tensor, p3: Tensor) -> Tensor:
        """1x1(C2) + CARAFE(P3): P2 before its 3x3 conv."""
        lateral = self.lateral_conv(c2)
        up = self.upsample(p3)[..., :lateral.shape[-2], :lateral.shape[-1]]
        return lateral + up

    @property
    def conv_is_local(self) -> bool:
        """The 3x3 conv has no norm layer: its output at a cell depends on the 3x3
        neighbourhood alone (and it is affine), so it can run on window crops."""
        return not self.fpn_conv.with_norm and not self.fpn_conv.with_activation

    def conv_windows(self, merged: Tensor, windows: Tensor, margin: int) -> Tensor:
        """The 3x3 conv on the window crops only (window + `margin` cells): each crop is cut
        with one cell more, which the conv alone reads, then dropped. crop_windows pads
        with zeros as the conv does, so inside the map this is the whole-map conv's output."""
        return self.fpn_conv(crop_windows(merged, windows, margin + 1))[..., 1:-1, 1:-1]

    def weighted_mean(self, merged: Tensor, weight: Tensor) -> Tensor:
        """(N, C) mean over the map of fpn_conv(merged) * weight (N, 1, H, W), without the
        whole-map conv: the conv is affine, so the sum over cells of weight * conv is the
        conv's taps applied to 9 weighted sums of the shifted input."""
        conv = self.fpn_conv.conv
        h, w = merged.shape[-2:]
        padded = F.pad(merged, (1, 1, 1, 1))
        sums = torch.stack([torch.einsum('nchw,nhw->nc', padded[..., i:i + h, j:j + w], weight[:, 0])
                            for i in range(3) for j in range(3)], dim=-1)  # (N, C_in, 9)
        out = torch.einsum('oik,nik->no', conv.weight.flatten(2), sums)
        if conv.bias is not None:
            out = out + conv.bias * weight.sum(dim=(1, 2, 3))[:, None]
        return out / (h * w)
