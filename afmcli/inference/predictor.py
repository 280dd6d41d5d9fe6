"""The mmdet backend's names where they were before afmcli.inference.backends
(mmdet_backend, speed, steps): kept for the code that imports them from here."""

from afmcli.inference.backends.mmdet_backend import (Model, TilePipeline, config_classes, load_model,
                                                     state_dict_mismatch, with_classes)
from afmcli.inference.backends.speed import (dense_head_outputs, float32_boxes_under_fp16, full_float32,
                                             fuse_backbone_conv_bn, probe_image, same_up_to_rounding,
                                             to_channels_last)
from afmcli.inference.backends.steps import ndarray_pipeline, step_type

__all__ = ["Model", "TilePipeline", "config_classes", "dense_head_outputs", "float32_boxes_under_fp16", "full_float32",
           "fuse_backbone_conv_bn", "load_model", "ndarray_pipeline", "probe_image", "same_up_to_rounding",
           "state_dict_mismatch", "step_type", "to_channels_last", "with_classes"]
