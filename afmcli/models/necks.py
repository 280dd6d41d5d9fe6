"""CFPN (FPN with CARAFE top-down upsampling) and the stride-4 P2 feature of the HD head."""

from __future__ import annotations

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.ops.carafe import CARAFEPack
from mmdet.models.necks import FPN_CARAFE
from mmdet.registry import MODELS
from mmengine.model import BaseModule, xavier_init
from torch import Tensor

from .carafe import CARAFEUpsample
from .windows import Windows, crop_windows, gather_windows


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
    def runs_on_windows(self) -> bool:
        """Whether `on_windows` gives the whole map's numbers: every layer is local (no norm
        layer, whose statistics span the map) and the upsampler is CARAFE (its reach is known)."""
        return (not self.lateral_conv.with_norm and not self.fpn_conv.with_norm
                and isinstance(self.upsample, CARAFEUpsample))

    def on_windows(self, c2: Tensor, p3: Tensor, windows: Windows) -> tuple[Tensor, Tensor]:
        """P2 on the window crops only (window + margin), as `forward` gives it inside the map
        and zero beyond: (crops (M, C, h + 2m, w + 2m), inside (M, 1, ...) 1 within the map).

        Each crop of C2 and of the upsampled P3 is cut one cell larger (the 3x3 conv's reach),
        and the P3 crops `upsample.reach` cells larger again, at stride 8: 13 windows of
        36x36 cells are a quarter of the stride-4 map at 1333x800."""
        c2_crops, inside = crop_windows(c2, windows, extra=1)
        h, w = c2_crops.shape[-2:]
        origins = windows.origins - 1  # stride-4 cells (x, y) of each crop's first cell
        r = self.upsample.reach
        source = torch.div(origins, 2, rounding_mode='floor') - r
        p3_crops, p3_inside = gather_windows(p3, source, windows.rows[:, 0], (-(-h // 2) + 1 + 2 * r,
                                                                            -(-w // 2) + 1 + 2 * r))
        up = self.upsample.forward_in_map(p3_crops, p3_inside)
        up, _ = gather_windows(up, origins - 2 * source, torch.arange(len(up), device=up.device), (h, w))
        merged = (self.lateral_conv(c2_crops) + up) * inside
        inside = inside[..., 1:-1, 1:-1]
        return self.fpn_conv(merged)[..., 1:-1, 1:-1] * inside, inside
