"""Decoding and tiling ahead of the model: a DataLoader over *units*, each one
forward pass of one image (up to ``batch_size`` of its tiles, or its full-image pass).

Units never mix images, so an image's detections do not depend on its neighbours,
its shard, its worker or where a resumed run began. With ``--workers N`` the units
come from N processes (each a contiguous block of the items, balanced by tile
count); on CUDA their tensors are pinned, and the model's data preprocessor copies
them with ``non_blocking``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from afmcli.inference.detections import Detections
from afmcli.inference.distributed import balanced_shards
from afmcli.inference.sources import FrameReader, ImageItem
from afmcli.inference.tiles import batched, iter_crops, plan_windows, window_to_image


@dataclass(frozen=True)
class Unit:
    image_id: int
    index: int  # of this unit among the image's units
    count: int  # units of the image (tile batches, then the full pass)
    windows: np.ndarray  # (k, 4) xyxy of the crops in this unit; the full pass: the whole image
    full: bool
    size: tuple[int, int]  # image width, height
    data: dict | None  # TilePipeline output, for model.test_step
    image: np.ndarray | None = None  # with --viz, on the image's last unit
    failed: bool = False  # unreadable image: the only unit of its image

    def pin_memory(self) -> "Unit":
        """DataLoader(pin_memory=True) calls this on each unit (page-locked inputs)."""
        if self.data is None:
            return self
        return dataclasses.replace(self, data={**self.data, "inputs": [t.pin_memory() for t in self.data["inputs"]]})


class UnitStream(IterableDataset):
    """The units of ``items``; in a DataLoader worker, those of its block of items."""

    def __init__(self, items: Sequence[ImageItem], weights: Sequence[float], pipeline, settings,
                 keep_image: bool = False):
        self.items, self.weights = list(items), list(weights)
        self.pipeline, self.settings, self.keep_image = pipeline, settings, keep_image

    def __iter__(self) -> Iterator[Unit]:
        info = get_worker_info()
        items = self.items if info is None else self.items[balanced_shards(self.weights, info.num_workers)[info.id]]
        reader = FrameReader()
        try:
            for item in items:
                yield from self.units(item, reader.read(item))
        finally:
            reader.close()

    def units(self, item: ImageItem, image: np.ndarray | None) -> Iterator[Unit]:
        s = self.settings
        if image is None:
            yield Unit(item.image_id, 0, 1, np.zeros((0, 4), np.int64), False, (0, 0), None, failed=True)
            return
        height, width = image.shape[:2]
        windows = plan_windows(height, width, s.slice_size, s.overlap, s.slices, s.full)
        groups = list(batched(range(len(windows)), s.batch_size))
        count = len(groups) + int(s.full)
        for k, index in enumerate(groups):
            yield Unit(item.image_id, k, count, windows[index], False, (width, height),
                       self.pipeline(list(iter_crops(image, windows[index]))),
                       image if self.keep_image and k == count - 1 else None)
        if s.full:
            yield Unit(item.image_id, count - 1, count, np.array([[0, 0, width, height]]), True, (width, height),
                       self.pipeline([image]), image if self.keep_image else None)


def make_loader(stream: UnitStream, workers: int, pin_memory: bool) -> DataLoader:
    """Units one by one (they are batches already), from ``workers`` processes, in
    whatever order they are ready (images are put together by id)."""
    kwargs = dict(num_workers=workers, prefetch_factor=2, in_order=False) if workers > 0 else {}
    return DataLoader(stream, batch_size=None, pin_memory=pin_memory, **kwargs)


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

