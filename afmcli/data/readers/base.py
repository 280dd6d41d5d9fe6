"""The contract every dataset reader keeps.

A reader knows a dataset's class names and split names before reading anything, and
reads one split into :class:`SplitData`: each image's file, its COCO record and its
labels in afm's form (:class:`afmcli.data.coco.ImageLabels`). Category ids are 1..K
in the order of ``classes``, whatever the source numbered them; ``iscrowd`` 1 marks an
ignored object (COCO's iscrowd, an ``ignore`` flag, VisDrone's score 0); class-agnostic
ignored regions go to ``ignore_regions``. Boxes refer to the upright image (a JPEG's
EXIF orientation applied, see :mod:`afmcli.data.images`) and are clipped to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afmcli.data.coco import ImageLabels, clip_xywh
from afmcli.errors import AfmError, ParameterError

# Normalised labels written with 6 decimals move a box edge by up to ~1e-3 px on a 2000 px
# image: clipping that little is rounding, not a box outside the image.
_ROUNDING_PX = 0.01
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class SplitData:
    """One split, read and checked.

    files[i] is the image of records[i] (``file_name``: its path relative to
    ``images_dir``, '/'-separated; ``width``, ``height``: upright) and labels[i].
    ``counts``: what the summary shows, in order; ``skipped``: why each left-out file was.
    ``label_files``: the source label file of each image where the layout keeps them
    (VisDrone's txt), else None.
    """

    images_dir: Path
    files: list[Path] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    labels: list[ImageLabels] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    label_files: list[Path] | None = None


class DatasetReader:
    """A dataset of one format: ``classes`` and ``splits`` ({name: the reader's own
    description of where that split lives}) known up front; :meth:`read` reads one."""

    format = ""

    def __init__(self, source: Path, classes, splits: dict):
        self.source = Path(source)
        self.classes = tuple(classes)
        self.splits = dict(splits)
        if not self.classes:
            raise AfmError(f"{source}: the dataset names no classes")
        dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dup:
            raise AfmError(f"{source}: class name {dup[0]!r} is given twice")
        for name in self.splits:
            if not SPLIT_NAME.match(name):
                raise AfmError(f"{source}: split name {name!r} must be letters, digits, '_' or '-'")

    def read(self, split: str, skip_bad: bool = False) -> SplitData:
        """Read ``split``; the first bad file is an AfmError naming it (file and line), or
        with ``skip_bad`` that image is left out and listed. No usable image is an error."""
        if split not in self.splits:
            raise ParameterError(f"{self.source}: no split {split!r} (it has {', '.join(self.splits)}); "
                                 "choose one with {split}", "split")
        data = self._read(self.splits[split], skip_bad)
        if not data.records:
            raise AfmError(f"{self.source}: split {split!r} has no usable image")
        return data

    def _read(self, spec, skip_bad: bool) -> SplitData:
        raise NotImplementedError


def dataset_root(source: Path, data: dict) -> Path:
    """A dataset yaml's root: its ``path`` (relative: from the yaml's folder), else the yaml's folder."""
    root = Path(str(data.get("path") or "."))
    return root if root.is_absolute() else source.parent / root


def skip_or_raise(data: SplitData, exc: AfmError, skip_bad: bool) -> None:
    """A bad file: the error itself, or with ``skip_bad`` one more skipped entry."""
    if not skip_bad:
        raise exc
    data.skipped.append(str(exc))


def boxes_to_labels(boxes_xywh, category_ids, crowd, width: int, height: int) -> ImageLabels:
    """One image's labels from x, y, w, h boxes (pixels), their category ids (1..K) and
    crowd flags: each box clipped to the image (counted when that changed it), a box
    empty once clipped dropped (counted)."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    clipped = clip_xywh(boxes, width, height)
    out = ImageLabels()
    for box, raw, cid, is_crowd in zip(clipped, boxes, category_ids, crowd):
        if box[2] <= 0 or box[3] <= 0:
            out.dropped += 1
            continue
        out.clipped += int(not np.allclose(box, raw, rtol=0, atol=_ROUNDING_PX))
        out.annotations.append({"category_id": int(cid), "bbox": [float(v) for v in box],
                                "area": float(box[2] * box[3]), "iscrowd": int(bool(is_crowd))})
    return out
