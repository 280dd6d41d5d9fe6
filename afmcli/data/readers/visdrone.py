"""The official VisDrone-DET layout: a split folder with images/ and annotations/ (one
txt per image, see :mod:`afmcli.data.visdrone_format`), VisDrone's ten classes."""

from __future__ import annotations

from pathlib import Path

from afmcli.data.convert import read_split
from afmcli.data.readers.base import DatasetReader, SplitData
from afmcli.data.visdrone_format import CLASSES


class VisDroneDataset(DatasetReader):
    """``splits``: {name: official split folder}."""

    format = "visdrone"

    def __init__(self, source: Path, splits: dict):
        super().__init__(source, CLASSES, splits)

    def _read(self, folder: Path, skip_bad: bool) -> SplitData:
        split = read_split(Path(folder), skip_bad)
        labels = split.labels
        return SplitData(
            images_dir=Path(folder) / "images", files=[image for image, _ in split.pairs], records=split.records,
            labels=labels, skipped=split.skipped, label_files=[txt for _, txt in split.pairs],
            counts={"images": len(split.records), "labels": sum(len(lab.annotations) for lab in labels),
                    "crowd (score 0)": sum(a["iscrowd"] for lab in labels for a in lab.annotations),
                    "ignored regions": sum(len(lab.ignore_regions) for lab in labels),
                    "others (cat 11)": sum(len(lab.others) for lab in labels),
                    "background images": sum(not lab.annotations for lab in labels),
                    "clipped boxes": sum(lab.clipped for lab in labels),
                    "dropped empty boxes": sum(lab.dropped for lab in labels),
                    "skipped bad files": len(split.skipped)})
