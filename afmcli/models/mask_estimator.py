"""FPD: light decoders that predict the small-object (P3) and large-object (P4) masks."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule, bias_init_with_prob, normal_init
from torch import Tensor


@MODELS.register_module()
@MODELS.register_module(name='MASK_EST')  # the name in the authors' published config
class MaskEstimator(BaseModule):
    """`model_num` decoders (num_convs x 3x3 conv-norm-ReLU, then 1x1 to `out_channels`).

    Decoder i reads feature level i of its input (P3 for the small mask, P4 for the large
    one); `loss` compares logits with masks of the same stride and names its entries
    `loss_names[i]`.
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 1, model_num: int = 2,
                 feat_channels: int = 128, num_convs: int = 2,
                 norm_cfg: dict | None = dict(type='GN', num_groups=16, requires_grad=True),
                 loss_mask: dict = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                 loss_dice: dict | None = None,
                 loss_names: Sequence[str] = ('loss_mask_s', 'loss_mask_l'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        if len(loss_names) != model_num:
            raise ValueError(f"MaskEstimator: {model_num} decoders need {model_num} loss_names")
        self.loss_names = tuple(loss_names)
        self.decoders = nn.ModuleList()
        for _ in range(model_num):
            layers = [ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3,
                                 padding=1, norm_cfg=norm_cfg) for i in range(num_convs)]
            layers.append(nn.Conv2d(feat_channels if num_convs else in_channels, out_channels, 1))
            self.decoders.append(nn.Sequential(*layers))
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice) if loss_dice else None

    def init_weights(self) -> None:
        super().init_weights()
        for decoder in self.decoders:
            for m in decoder.modules():
                if isinstance(m, nn.Conv2d):
                    normal_init(m, std=0.01)
            # Start near the sparse masks' prior so early BCE does not swamp the detector.
            normal_init(decoder[-1], std=0.01, bias=bias_init_with_prob(0.05))

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Mask logits, one (N, out_channels, h, w) map per decoder, from feats[i]."""
        return [decoder(feat) for decoder, feat in zip(self.decoders, feats)]

    def loss(self, logits: Sequence[Tensor], targets: Sequence[Tensor]) -> dict:
        """BCE with logits (+ Dice) of each decoder against its (N, 1, h, w) target.

        Dice is averaged over the images whose target has foreground: on an empty target it
        is 1 - eps / (sum p^2 + eps), a constant 1 with no gradient, which only diluted the
        term (the BCE teaches such images their background)."""
        losses = {}
        for name, logit, target in zip(self.loss_names, logits, targets):
            loss = self.loss_mask(logit, target)
            if self.loss_dice is not None:
                has_objects = (target.flatten(1).amax(dim=1) > 0).to(logit.dtype)
                loss = loss + self.loss_dice(logit, target, weight=has_objects,
                                             avg_factor=has_objects.sum().clamp(min=1))
            losses[name] = loss
        return losses
