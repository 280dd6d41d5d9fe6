"""AFMNet model parts, registered in mmdet's MODELS on import.

Configs load them with `custom_imports=dict(imports=['afmcli.models', ...])`.
"""

from .affm import AFFM
from .afmnet import AFMNet
from .carafe import CARAFEUpsample, carafe_any, carafe_torch
from .hd_head import WindowTOODHead
from .irfi import IRFI
from .losses import FocalLossFP32, QualityFocalLossFP32
from .mask_estimator import MaskEstimator
from .necks import CARAFEFPN, P2Feature

__all__ = ['AFFM', 'AFMNet', 'CARAFEUpsample', 'carafe_any', 'carafe_torch', 'IRFI',
           'FocalLossFP32', 'QualityFocalLossFP32', 'MaskEstimator', 'CARAFEFPN', 'P2Feature',
           'WindowTOODHead']
