"""Predicting images: tiles and a full-image pass, in image pixels, relabelled and fused.

An image is run as *units*, each one forward pass of that image only (up to
``batch_size`` of its tiles, or its full-image pass), so its detections do not
depend on its neighbours, its shard, its worker or where a resumed run began. Once all
its units are back they are shifted to image pixels, relabelled to category ids and
fused (:func:`finish_image`).

`afm infer` and the Python API (:func:`afmcli.predict`, :func:`afmcli.predict_source`)
both run :func:`predict_units`; they differ only in where the units come from
(afmcli.inference.loader) and where the results go.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

from afmcli.data.slicing import check_overlap
from afmcli.detections import Detections
from afmcli.errors import ParameterError
from afmcli.inference.fusion import check_fusion_options, fuse_image
from afmcli.inference.settings import PredictSettings
from afmcli.inference.tiles import batched, iter_crops, plan_windows, window_to_image


def check_settings(s: PredictSettings) -> None:
    """Every setting at once, before the model or any image is loaded (the one check)."""
    if not (s.slices or s.full):
        raise ParameterError("{slices=False} and {full=False} together leave nothing to run", "slices=False",
                             "full=False")
    if s.slice_size < 1 or s.batch_size < 1:
        raise ParameterError(f"{{slice_size}} and {{batch_size}} must be >= 1, got {s.slice_size} and "
                             f"{s.batch_size}", "slice_size", "batch_size")
    check_overlap(s.overlap)
    check_fusion_options(s.method, s.iou, s.match, False, None, 2, s.max_per_img)


@dataclass(frozen=True)
class ImageResult:
    image_id: int
    size: tuple[int, int]  # width, height
    n_tiles: int
    slices: Detections  # labels are category ids from here on
    full: Detections
    fused: Detections


@dataclass(frozen=True)
class Unit:
    image_id: int
    index: int  # of this unit among the image's units
    count: int  # units of the image (tile batches, then the full pass)
    windows: np.ndarray  # (k, 4) xyxy of the crops in this unit; the full pass: the whole image
    full: bool
    size: tuple[int, int]  # image width, height
    data: dict | None  # TilePipeline output, for Model.forward
    image: np.ndarray | None = None  # the pixels, on the image's last unit, where a writer draws them
    failed: bool = False  # unreadable image: the only unit of its image
    source: np.ndarray | torch.Tensor | None = None  # device_tiles: the image the model cuts ``windows`` from

    def pin_memory(self) -> "Unit":
        """DataLoader(pin_memory=True) calls this on each unit (page-locked inputs)."""
        if self.source is not None:
            return dataclasses.replace(self, source=torch.from_numpy(self.source).pin_memory())
        if self.data is None or not isinstance(self.data["inputs"], list):  # an ONNX model's numpy batch
            return self
        return dataclasses.replace(self, data={**self.data, "inputs": [t.pin_memory() for t in self.data["inputs"]]})


def image_units(image_id: int, image: np.ndarray | None, pipeline, s: PredictSettings,
                keep_image: bool = False) -> Iterator[Unit]:
    """The units of one image (None: an unreadable image, one failed unit)."""
    if image is None:
        yield Unit(image_id, 0, 1, np.zeros((0, 4), np.int64), False, (0, 0), None, failed=True)
        return
    height, width = image.shape[:2]
    windows = plan_windows(height, width, s.slice_size, s.overlap, s.slices, s.full)
    groups = list(batched(range(len(windows)), s.batch_size))
    count = len(groups) + int(s.full)
    # With device_tiles every unit carries the (same) image and the model does the pipeline's work.
    source = image if s.device_tiles else None
    for k, index in enumerate(groups):
        yield Unit(image_id, k, count, windows[index], False, (width, height),
                   None if s.device_tiles else pipeline(list(iter_crops(image, windows[index]))),
                   image if keep_image and k == count - 1 else None, source=source)
    if s.full:
        yield Unit(image_id, count - 1, count, np.array([[0, 0, width, height]]), True, (width, height),
                   None if s.device_tiles else pipeline([image]), image if keep_image else None, source=source)


@dataclass
class PendingImage:
    """The units of one image as their detections arrive (any order)."""

    count: int
    size: tuple[int, int]
    parts: dict[int, tuple[Unit, list[Detections]]] = field(default_factory=dict)
    image: np.ndarray | None = None

    def add(self, unit: Unit, dets: list[Detections]) -> bool:
        """Store a unit's detections; True once the image is complete."""
        self.parts[unit.index] = (unit, dets)
        if unit.image is not None:
            self.image = unit.image
        return len(self.parts) == self.count

    def detections(self) -> tuple[Detections, Detections, int]:
        """(tile detections, full-image detections, tiles) in image coordinates, tiles in order."""
        slices, full, n_tiles = [], [], 0
        for index in sorted(self.parts):
            unit, dets = self.parts[index]
            moved = [window_to_image(d, w) for d, w in zip(dets, unit.windows)]
            if unit.full:
                full += moved
            else:
                slices += moved
                n_tiles += len(unit.windows)
        return Detections.concat(slices), Detections.concat(full), n_tiles


def finish_image(pending: PendingImage, image_id: int, to_category: list[int], s: PredictSettings,
                 device: str = "cpu") -> ImageResult:
    """Relabel to category ids and fuse the tiles with the full pass (settings checked once,
    by :func:`check_settings`), NMS on ``device``."""
    slices, full, n_tiles = pending.detections()
    slices, full = slices.relabel(to_category), full.relabel(to_category)
    fused = fuse_image([slices, full], s.method, s.iou, s.match, max_per_img=s.max_per_img, image_size=pending.size,
                       device=device)
    return ImageResult(image_id, pending.size, n_tiles, slices, full, fused)


def predict_units(model, units: Iterable[Unit], to_category: list[int], s: PredictSettings
                  ) -> Iterator[tuple[int, ImageResult | None, np.ndarray | None]]:
    """Run ``units`` (images may interleave) through ``model`` (afmcli.inference.backends);
    the fusion's NMS runs on ``model.nms_device``; yield ``(image_id, result, pixels)`` as each image
    completes: result None for an unreadable image, pixels where its units kept them."""
    pending: dict[int, PendingImage] = {}
    for unit in units:
        if unit.failed:
            yield unit.image_id, None, None
            continue
        image = pending.setdefault(unit.image_id, PendingImage(unit.count, unit.size))
        dets = model.forward(unit.data, s.score_thr) if unit.source is None else \
            model.forward_windows(unit.source, unit.windows, s.score_thr)
        if image.add(unit, dets):
            del pending[unit.image_id]
            yield unit.image_id, finish_image(image, unit.image_id, to_category, s, model.nms_device), image.image
