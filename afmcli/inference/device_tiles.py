"""Tiles cut on the model's device (`afm infer --device-tiles`): the image goes to the
device once, and its crops are resized and packed there, in place of the test pipeline's
per-tile work on the CPU (cv2 resizes and one host-to-device copy per resized tile).

Only a test pipeline of ``Resize`` (bilinear, to a ``scale``) and ``PackDetInputs`` can
move: those two steps are reproduced here, with mmcv's sizes and mmdet's metainfo, so the
model gets what the pipeline would give it up to rounding: cv2 resizes uint8 pixels in
fixed point, this resizes in float and rounds, a difference of at most one grey level.
"""

from __future__ import annotations

import inspect
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from afmcli.errors import ParameterError
from afmcli.inference.backends.steps import step_type

OPTION = "device_tiles"


class DeviceTiles:
    """The test pipeline's ``Resize`` + ``PackDetInputs`` on tensors, from its steps (after
    afmcli.inference.backends.steps.ndarray_pipeline); other steps are refused by name."""

    def __init__(self, steps: Sequence[Mapping]):
        from mmdet.datasets.transforms import PackDetInputs

        self.scale, self.keep_ratio = None, False
        self.meta_keys = inspect.signature(PackDetInputs).parameters["meta_keys"].default
        for step in steps:
            name = step_type(step)
            if name == "LoadImageFromNDArray":
                continue
            if name == "Resize" and self.scale is None and step.get("scale") is not None \
                    and step.get("scale_factor") is None and step.get("interpolation", "bilinear") == "bilinear":
                scale = step["scale"]
                self.scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
                self.keep_ratio = bool(step.get("keep_ratio", False))
            elif name == "PackDetInputs":
                self.meta_keys = tuple(step.get("meta_keys", self.meta_keys))
            else:
                raise ParameterError(f"{{{OPTION}}}: the test pipeline's {name} step {dict(step)} runs on the CPU "
                                     "only (on the device: one bilinear Resize to a scale, then PackDetInputs); "
                                     "run without it", OPTION)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the Resize step, as mmcv computes it."""
        if self.scale is None:
            return width, height
        if self.keep_ratio:
            import mmcv

            return mmcv.rescale_size((width, height), self.scale)
        return self.scale

    def batch(self, image: torch.Tensor, windows: np.ndarray) -> dict:
        """``model.test_step``'s input for the crops ``windows`` (xyxy) of ``image`` (H, W, 3
        uint8 BGR, on the model's device), as TilePipeline makes it from the crops. Crops of
        one size (SAHI's tiles all are) come as one (N, 3, H, W) tensor, resized at once, which
        the data preprocessor also normalises and pads at once; others as a list."""
        from mmdet.structures import DetDataSample

        crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in np.asarray(windows, dtype=np.int64).tolist()]
        samples = []
        for index, crop in enumerate(crops):
            height, width = crop.shape[:2]
            new_w, new_h = self.size(width, height)
            meta = dict(img_id=index, img_path=None, ori_shape=(height, width), img_shape=(new_h, new_w),
                        scale_factor=(new_w / width, new_h / height))
            samples.append(DetDataSample(metainfo={k: meta[k] for k in self.meta_keys if k in meta}))
        if len({crop.shape for crop in crops}) == 1:
            inputs = self.resized(torch.stack(crops).permute(0, 3, 1, 2))
        else:
            inputs = [self.resized(crop.permute(2, 0, 1)[None])[0] for crop in crops]
        return dict(inputs=inputs, data_samples=samples)

    def resized(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) uint8 crops of one size after the Resize step, contiguous."""
        height, width = crops.shape[2:]
        new_w, new_h = self.size(width, height)
        if (new_w, new_h) != (width, height):
            # cv2's INTER_LINEAR: half-pixel centres (align_corners=False), no antialiasing
            crops = F.interpolate(crops.float(), size=(new_h, new_w), mode="bilinear",
                                  align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        return crops.contiguous()
