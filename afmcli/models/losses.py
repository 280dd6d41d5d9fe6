"""TOOD's classification losses, safe under mixed precision.

With ``activated=True`` (TOOD's setting: the head outputs probabilities) mmdet's
FocalLoss and QualityFocalLoss call ``F.binary_cross_entropy``, which CUDA autocast
refuses ("unsafe to autocast", mmdetection#10203): ``--amp`` training stops at the first
step. These subclasses compute the same loss in float32 with autocast off, the way
autocast itself runs ``binary_cross_entropy_with_logits``. Outside autocast with float32
inputs they are exactly mmdet's losses; the configs name them instead of mmdet's.
"""

from __future__ import annotations

import torch
from mmdet.models.losses import FocalLoss, QualityFocalLoss
from mmdet.registry import MODELS


def as_float32(value):
    """Floating tensors (also inside a tuple/list, QFL's (labels, scores) target) to float32."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(as_float32(v) for v in value)
    return value


def in_float32(fn):
    """``fn`` run with autocast off (on its first argument's device type) and its floating
    positional arguments in float32; keyword arguments pass as they are."""
    def run(*args, **kwargs):
        with torch.autocast(device_type=args[0].device.type, enabled=False):
            return fn(*as_float32(args), **kwargs)
    return run


class _Float32Forward:
    """Mixin: run the parent loss's forward in float32 with autocast disabled."""

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        return in_float32(super().forward)(pred, target, weight, avg_factor=avg_factor,
                                           reduction_override=reduction_override)


@MODELS.register_module()
class FocalLossFP32(_Float32Forward, FocalLoss):
    """mmdet's FocalLoss, computed in float32 (AMP-safe with ``activated=True``)."""


@MODELS.register_module()
class QualityFocalLossFP32(_Float32Forward, QualityFocalLoss):
    """mmdet's QualityFocalLoss, computed in float32 (AMP-safe with ``activated=True``)."""
