"""The settings of a prediction (:class:`PredictSettings`, the API's and `afm infer`'s) and of
an `afm infer` run (:class:`InferSettings`); afmcli.inference.predict.check_settings checks them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PredictSettings:
    """Everything that changes an image's detections."""

    slice_size: int = 640
    overlap: float = 0.25
    batch_size: int = 8
    slices: bool = True
    full: bool = True
    score_thr: float = 0.01
    method: str = "nms"
    iou: float = 0.6
    match: str = "iou"
    max_per_img: int = 500
    device_tiles: bool = False  # cut and resize the tiles on the model's device (afmcli.inference.device_tiles)


@dataclass
class InferSettings(PredictSettings):
    """Everything that changes the results (part of the run's fingerprint): the
    prediction's settings and which optional outputs are written."""

    viz: bool = False
    viz_score: float = 0.3
    vid: bool = False
    yolo: bool = False
    fuse_conv_bn: bool = False
    fp16: bool = False
    channels_last: bool = False
