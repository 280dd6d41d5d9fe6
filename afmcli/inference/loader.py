"""Decoding and tiling ahead of the model: a DataLoader over the units of a source's
images (afmcli.inference.predict).

With ``workers`` > 0 the units come from that many processes (each a contiguous block
of the items, balanced by tile count), in whatever order they are ready; on CUDA their
tensors are pinned, and the model's data preprocessor copies them with ``non_blocking``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from afmcli.inference.distributed import balanced_shards
from afmcli.inference.predict import PredictSettings, Unit, image_units
from afmcli.inference.sources import ImageItem, Source
from afmcli.inference.tiles import plan_windows


class UnitStream(IterableDataset):
    """The units of ``items`` of ``source``; in a DataLoader worker, those of its block of items."""

    def __init__(self, source: Source, items: Sequence[ImageItem], weights: Sequence[float], pipeline,
                 settings: PredictSettings, keep_image: bool = False):
        self.source, self.items, self.weights = source, list(items), list(weights)
        self.pipeline, self.settings, self.keep_image = pipeline, settings, keep_image

    def __iter__(self) -> Iterator[Unit]:
        info = get_worker_info()
        items = self.items if info is None else self.items[balanced_shards(self.weights, info.num_workers)[info.id]]
        for item, image in self.source.read(items):
            yield from image_units(item.image_id, image, self.pipeline, self.settings, self.keep_image)


def image_weight(source: Source, item: ImageItem, settings: PredictSettings) -> int:
    """Forward passes of one image (its tiles, plus the full pass), from its size
    without decoding; an unreadable header counts as one."""
    return size_weight(source.size(item), settings)


def size_weight(size: tuple[int, int] | None, settings: PredictSettings) -> int:
    """:func:`image_weight` of an image of ``size`` (width, height; None: unknown)."""
    if size is None:
        return 1
    return len(plan_windows(size[1], size[0], settings.slice_size, settings.overlap, settings.slices,
                            settings.full)) + int(settings.full)


def make_loader(stream: UnitStream, workers: int, pin_memory: bool) -> DataLoader:
    """Units one by one (they are batches already), from ``workers`` processes, in
    whatever order they are ready (images are put together by id)."""
    kwargs = dict(num_workers=workers, prefetch_factor=2, in_order=False) if workers > 0 else {}
    return DataLoader(stream, batch_size=None, pin_memory=pin_memory, **kwargs)
