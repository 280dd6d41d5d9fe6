"""Shared fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SynthSplit:
    """A small synthetic split, both in the official layout and converted.

    src: the official-layout folder (images/*.jpg, annotations/*.txt);
    root: the Datasets/ root after `afm convert-visdrone` and `afm make-masks`
    (split ``train``); ann_file: its COCO json; images: images/train/ under root.
    """

    src: Path
    root: Path
    ann_file: Path
    images: Path
    num_images: int
    width: int
    height: int


@pytest.fixture(scope="session")
def synth_split(tmp_path_factory) -> SynthSplit:
    """8 synthetic 640x480 images (seed 0), converted to COCO, with mask files."""
    from afmcli.data.convert import convert_split
    from afmcli.data.layout import DatasetPaths
    from afmcli.data.mask_files import write_mask_files
    from afmcli.data.synth import write_synth_split

    base = tmp_path_factory.mktemp("synth")
    src, root = base / "VisDrone2019-DET-train", base / "Datasets"
    write_synth_split(src, "train", 8, seed=0, width=640, height=480, workers=2)
    convert_split(src, root, "train")
    write_mask_files(root, "train", workers=2)
    paths = DatasetPaths(root, "train")
    return SynthSplit(src=src, root=root, ann_file=paths.ann_file, images=paths.images,
                      num_images=8, width=640, height=480)


@pytest.fixture(autouse=True)
def mmdet_default_scope():
    """Every test starts in mmdet's registry scope, whatever ran before it in the
    same worker (a Runner of another scope changes the current default scope)."""
    import mmdet.utils
    from mmengine.registry import DefaultScope

    mmdet.utils.register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmdet"):
        yield
