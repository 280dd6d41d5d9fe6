"""mmdet pipeline transforms for AFMNet's mask ground truth (gt_mask_s, gt_mask_l).

Two ways to get the masks, giving the same maps (see `afmcli.data.masks`):

1. On the fly, from the boxes, after Resize/Flip/Crop::

       dict(type='RenderObjectMasks', strides=(8, 16), kind='oval', small_area=1024)

2. From the mask files of `afm make-masks` (image resolution), carried through
   mmdet's geometric transforms as a 2-channel ``gt_seg_map`` (Resize, RandomFlip,
   RandomCrop and Pad all process that key, nearest-neighbour), then sampled::

       dict(type='LoadObjectMasks', mask_root_s=..., mask_root_l=...),
       ... Resize, RandomFlip ...,
       dict(type='DownsampleObjectMasks', strides=(8, 16)),

Either way the maps are ceil(h / stride) x ceil(w / stride) of the current
``img_shape`` (put them before any Pad transform, which sets ``img_shape`` to the
padded shape; mmdet detection configs pad in the data preprocessor instead); `PackAFMInputs` (instead of PackDetInputs) puts them on the data
sample as ``gt_mask_s`` / ``gt_mask_l`` (PixelData, ``.data`` float 1 x h x w, 0/1).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes
from mmengine.structures import PixelData

from afmcli.data.masks import (DEFAULT_GAUSSIAN_THRESHOLD, DEFAULT_SMALL_AREA, render_object_masks,
                               sample_cell_centres)
from afmcli.data.images import image_key
from afmcli.errors import AfmError

MASK_KEYS = ("gt_mask_s", "gt_mask_l")


def _grid_shape(img_shape, stride: int) -> tuple[int, int]:
    return -(-int(img_shape[0]) // stride), -(-int(img_shape[1]) // stride)


@TRANSFORMS.register_module()
class RenderObjectMasks(BaseTransform):
    """Render gt_mask_s (at ``strides[0]``) and gt_mask_l (at ``strides[1]``) from gt_bboxes.

    Put it after the geometric transforms. Crowd boxes (``gt_ignore_flags``) are
    left out; the small/large split uses each box's ORIGINAL area (its current area
    divided by the product of ``scale_factor``).
    """

    def __init__(self, strides=(8, 16), kind: str = "oval", small_area: float = DEFAULT_SMALL_AREA,
                 threshold: float = DEFAULT_GAUSSIAN_THRESHOLD):
        self.strides = tuple(int(s) for s in strides)
        self.kind = kind
        self.small_area = small_area
        self.threshold = threshold

    def transform(self, results: dict) -> dict:
        boxes = results.get("gt_bboxes", np.zeros((0, 4), np.float32))
        boxes = boxes.tensor.numpy() if isinstance(boxes, BaseBoxes) else np.asarray(boxes)
        boxes = boxes.reshape(-1, 4).astype(np.float64)
        flags = results.get("gt_ignore_flags")
        if flags is not None:
            boxes = boxes[~np.asarray(flags, dtype=bool)]
        sx, sy = results.get("scale_factor", (1.0, 1.0))
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (sx * sy)
        for index, (key, stride) in enumerate(zip(MASK_KEYS, self.strides)):
            masks = render_object_masks(boxes, areas, _grid_shape(results["img_shape"], stride), stride,
                                        self.kind, self.small_area, self.threshold)
            results[key] = masks[index]
        return results

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(strides={self.strides}, kind={self.kind!r}, "
                f"small_area={self.small_area}, threshold={self.threshold})")


@TRANSFORMS.register_module()
class LoadObjectMasks(BaseTransform):
    """Load the mask files of an image into ``gt_seg_map`` (H x W x 2, 0/1: small, large).

    Files are ``<mask_root>/<image key>.png`` (0/255, image resolution), the
    layout `afm make-masks` writes: the key is the image's path relative to
    ``img_root`` (the dataset's image folder) without its suffix. Without
    ``img_root``, the longest tail of the image's path that has a mask file in the
    first root (``seq1/f`` before ``f``), so images in sub-folders keep their own masks. mmdet's Resize,
    RandomFlip, RandomCrop and Pad keep ``gt_seg_map`` aligned with the image;
    `DownsampleObjectMasks` then turns it into the two maps.
    """

    def __init__(self, mask_root_s: str, mask_root_l: str, img_root: str | None = None):
        self.mask_roots = (Path(mask_root_s), Path(mask_root_l))
        self.img_root = Path(img_root) if img_root else None

    def _load(self, root: Path, stem: str, shape) -> np.ndarray:
        path = root / f"{stem}.png"
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise AfmError(f"{path}: missing or unreadable mask file (run `afm make-masks`)")
        if mask.shape != tuple(shape):
            raise AfmError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                           f"{shape[1]}x{shape[0]}")
        return (mask > 127).astype(np.uint8)

    def _key_by_tail(self, path: Path) -> str:
        parts = PurePosixPath(path.as_posix()).with_suffix("").parts
        parts = parts[1:] if path.is_absolute() else parts
        tails = ["/".join(parts[i:]) for i in range(len(parts))]  # longest first, the stem last
        return next((tail for tail in tails if (self.mask_roots[0] / f"{tail}.png").is_file()), tails[-1])

    def transform(self, results: dict) -> dict:
        if results.get("gt_seg_map") is not None:
            raise AfmError("LoadObjectMasks: gt_seg_map is already in use by the pipeline")
        path = Path(results["img_path"])
        key = image_key(path.relative_to(self.img_root)) if self.img_root else self._key_by_tail(path)
        shape = results["img_shape"][:2]
        results["gt_seg_map"] = np.stack([self._load(root, key, shape) for root in self.mask_roots], axis=2)
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(mask_root_s={self.mask_roots[0]}, mask_root_l={self.mask_roots[1]})"


@TRANSFORMS.register_module()
class DownsampleObjectMasks(BaseTransform):
    """``gt_seg_map`` of `LoadObjectMasks` -> gt_mask_s / gt_mask_l at the strides, by cell centres."""

    def __init__(self, strides=(8, 16)):
        self.strides = tuple(int(s) for s in strides)

    def transform(self, results: dict) -> dict:
        full = results.pop("gt_seg_map")
        for channel, (key, stride) in enumerate(zip(MASK_KEYS, self.strides)):
            # == 1, not > 0: Pad fills gt_seg_map with 255, which is not an object.
            results[key] = sample_cell_centres(full[..., channel] == 1, results["img_shape"], stride)
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(strides={self.strides})"


@TRANSFORMS.register_module()
class PackAFMInputs(PackDetInputs):
    """PackDetInputs plus ``gt_mask_s`` / ``gt_mask_l`` as PixelData (float 1 x h x w)."""

    def transform(self, results: dict) -> dict:
        masks = {key: results.pop(key) for key in MASK_KEYS if key in results}
        packed = super().transform(results)
        for key, mask in masks.items():
            packed["data_samples"].set_field(PixelData(data=torch.from_numpy(mask[None].astype(np.float32))), key)
        return packed
