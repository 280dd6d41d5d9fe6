"""The Datasets/ layout of the paper's code: where each split's files live.

    Datasets/
      images/<split>/                          images
      labels/annotations/<split>_labels.json   our COCO json (afmcli/data/coco.py)
      labels/org/<split>_annotations/          the official txt labels
      labels/gt_mask_s/<split>/  labels/gt_mask_l/<split>/   mask files
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from afmcli.errors import ParameterError

LABELS_SUFFIX = "_labels.json"


@dataclass
class DatasetPaths:
    """Where a split lives under the Datasets/ root."""

    root: Path
    split: str

    @classmethod
    def from_ann_file(cls, ann_file: Path) -> "DatasetPaths":
        """The split whose COCO json is ``ann_file`` (``<root>/labels/annotations/<split>_labels.json``)."""
        ann_file = Path(ann_file)
        if not ann_file.name.endswith(LABELS_SUFFIX):
            raise ParameterError(f"{ann_file}: cannot tell the split from the name (expected "
                                 f"<split>{LABELS_SUFFIX}); pass {{images_dir}} DIR", "images_dir")
        return cls(ann_file.parent.parent.parent, ann_file.name[:-len(LABELS_SUFFIX)])

    @property
    def images(self) -> Path:
        return self.root / "images" / self.split

    @property
    def ann_file(self) -> Path:
        return self.root / "labels" / "annotations" / f"{self.split}{LABELS_SUFFIX}"

    @property
    def org_labels(self) -> Path:
        return self.root / "labels" / "org" / f"{self.split}_annotations"

    def mask_dir(self, size: str) -> Path:
        return self.root / "labels" / f"gt_mask_{size}" / self.split
