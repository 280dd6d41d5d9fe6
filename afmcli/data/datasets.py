"""DATA -> a dataset: the one way every command and the Python API take a dataset.

DATA is one of:

- an ultralytics ``data.yaml`` (a yaml with ``names`` and no ``format``), or a folder
  holding one: YOLO labels (:mod:`afmcli.data.readers.yolo`);
- afm's dataset yaml for COCO json (:mod:`afmcli.data.readers.coco`)::

      format: coco
      path: /data/flights        # optional root of the paths below (default: this file's folder)
      train: {ann: annotations/train.json, images: images/train}
      val: {ann: annotations/val.json, images: images/val}
      names: [person, car, boat]  # optional (default: the json's categories in id order)

- a COCO json file: one split, ``train``, its images under ``images`` (default: the
  json's folder);
- afm's dataset yaml for VisDrone (``format: visdrone``, ``train: VisDrone2019-DET-train``,
  ``val: ...``: official split folders), or one official split folder (images/ and
  annotations/), named by ``split`` (default ``train``);
- a Datasets/ root afm wrote (``labels/annotations/<split>_labels.json``): COCO, one
  split per json.

:func:`convert_dataset` writes any of them into afm's Datasets/ layout (COCO json with
categories 1..K in class order, crops with ``slice_size``), the way
``afm convert-visdrone`` always has.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from afmcli.data.convert import ConvertStats, SplitWriter, check_slicing
from afmcli.data.layout import LABELS_SUFFIX, DatasetPaths
from afmcli.data.readers.base import DatasetReader, SplitData, dataset_root
from afmcli.data.readers.coco import CocoDataset
from afmcli.data.readers.visdrone import VisDroneDataset
from afmcli.data.readers.yolo import YoloDataset
from afmcli.errors import AfmError, ParameterError
from afmcli.io import cache_folder, output_lock

FORMATS = ("yolo", "coco", "visdrone")
DATASET_SUFFIXES = (".yaml", ".yml")
DATA_YAMLS = ("data.yaml", "data.yml")  # a folder holding one is that dataset


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise AfmError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except OSError as exc:
        raise AfmError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise AfmError(f"{path}: a dataset yaml must be a mapping (train:, val:, names: ...)")
    return data


def _coco_from_yaml(path: Path, data: dict) -> CocoDataset:
    root = dataset_root(path, data)
    splits = {}
    for name, spec in data.items():
        if name in ("format", "path", "names"):
            continue
        if not isinstance(spec, dict) or "ann" not in spec or "images" not in spec:
            raise AfmError(f"{path}: split {name!r} must be {{ann: FILE.json, images: FOLDER}}")
        splits[str(name)] = (root / str(spec["ann"]), root / str(spec["images"]))
    if not splits:
        raise AfmError(f"{path}: names no split (train: {{ann: ..., images: ...}})")
    names = data.get("names")
    if names is not None and (not isinstance(names, list) or not names):
        raise AfmError(f"{path}: 'names' must be a list of class names")
    return CocoDataset(path, splits, [str(n) for n in names] if names else None)


def _from_yaml(path: Path) -> DatasetReader:
    data = _read_yaml(path)
    kind = data.get("format", "yolo")
    if kind == "yolo":
        return YoloDataset.from_yaml(path, data)
    if kind == "coco":
        return _coco_from_yaml(path, data)
    if kind == "visdrone":
        root = dataset_root(path, data)
        splits = {str(k): root / str(v) for k, v in data.items() if k not in ("format", "path", "names")}
        return VisDroneDataset(path, splits)
    raise AfmError(f"{path}: format must be one of {', '.join(FORMATS)}, got {kind!r}")


def is_dataset(path: Path) -> bool:
    """A dataset (what :func:`open_dataset` opens) rather than a COCO json or a VisDrone
    annotations folder: a dataset yaml, or a folder holding a data.yaml, a VisDrone split
    (images/ and annotations/) or afm's Datasets/ layout."""
    if path.suffix.lower() in DATASET_SUFFIXES:
        return True
    return path.is_dir() and (any((path / name).is_file() for name in DATA_YAMLS)
                              or ((path / "images").is_dir() and (path / "annotations").is_dir())
                              or (path / "labels" / "annotations").is_dir())


def open_dataset(data: str | os.PathLike | DatasetReader, images: str | os.PathLike | None = None,
                 split: str = "train") -> DatasetReader:
    """The dataset DATA names (see the module's docstring). ``images``: the image folder
    of a bare COCO json; ``split``: the name of a bare json's or split folder's one split."""
    if isinstance(data, DatasetReader):
        return data
    path = Path(data)
    if images is not None and path.suffix.lower() != ".json":
        raise ParameterError(f"{{images}} goes with a COCO json DATA, not {path}", "images")
    if path.is_file() and path.suffix.lower() in DATASET_SUFFIXES:
        return _from_yaml(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return CocoDataset(path, {split: (path, Path(images) if images is not None else path.parent)})
    if path.is_dir():
        for name in DATA_YAMLS:
            if (path / name).is_file():
                return _from_yaml(path / name)
        if (path / "images").is_dir() and (path / "annotations").is_dir():
            return VisDroneDataset(path, {split: path})
        jsons = sorted((path / "labels" / "annotations").glob(f"*{LABELS_SUFFIX}"))
        if jsons:
            splits = {}
            for ann in jsons:
                paths = DatasetPaths.from_ann_file(ann)
                splits[paths.split] = (ann, paths.images)
            return CocoDataset(path, splits)
        raise AfmError(f"{path}: not a dataset (no data.yaml, no images/ + annotations/ of VisDrone, no "
                       f"labels/annotations/*{LABELS_SUFFIX} of afm)")
    if not path.exists():
        raise AfmError(f"{path}: no such dataset file or folder")
    raise AfmError(f"{path}: not a dataset (a data.yaml, a dataset yaml with format:, a COCO json or a folder)")


@dataclass
class ConvertedSplit:
    """One split written into the Datasets/ root: what was read, what was written."""

    name: str
    data: SplitData
    stats: ConvertStats
    ann_file: Path
    images: Path
    sliced_ann_file: Path | None = None
    sliced_images: Path | None = None


def convert_dataset(data: str | os.PathLike | DatasetReader, out: str | os.PathLike,
                    splits: Sequence[str] | None = None, sliced: Sequence[str] | None = None,
                    copy: bool = False, skip_bad: bool = False, slice_size: int | Sequence[int] | None = None,
                    overlap: float = 0.25, min_visible: float = 0.5, workers: int = 0,
                    images: str | os.PathLike | None = None, reuse: bool = False) -> list[ConvertedSplit]:
    """Write ``splits`` (default: all) of DATA into the Datasets/ root ``out``; crops of
    ``slice_size`` for the ``sliced`` splits (default: every converted one). Every
    output folder is checked before anything is read, every split read before it is
    written; afm replaces only what it wrote. ``reuse``: keep a split that an earlier
    call wrote from the same files with the same options (see SplitWriter.write)."""
    dataset = open_dataset(data, images)
    names = list(dataset.splits) if splits is None else list(splits)
    for name in names:
        if name not in dataset.splits:
            raise ParameterError(f"{dataset.source}: no split {name!r} (it has {', '.join(dataset.splits)})",
                                 "split")
    slice_sizes = check_slicing(slice_size, overlap, min_visible)
    cut = set(names if sliced is None else sliced) if slice_sizes else set()
    writers = {name: SplitWriter(Path(out), name, name in cut, org_labels=dataset.format == "visdrone")
               for name in names}
    done = []
    for name in names:
        split = dataset.read(name, skip_bad)
        stats = writers[name].write(split.files, split.records, split.labels, dataset.classes, copy=copy,
                                    slice_sizes=slice_sizes if name in cut else (), overlap=overlap,
                                    min_visible=min_visible, workers=workers, org_labels=split.label_files,
                                    reuse=reuse)
        paths, crops = DatasetPaths(Path(out), name), DatasetPaths(Path(out), f"{name}_sliced")
        done.append(ConvertedSplit(name, split, stats, paths.ann_file, paths.images,
                                   crops.ann_file if name in cut else None, crops.images if name in cut else None))
    return done


def split_json(data: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """The COCO json of DATA's ``split`` and its image folder, for `afm evaluate --gt DATA` and
    `afm infer DATA`: the split as afm reads it for training (images missing from the folder
    left out, ignored objects kept), categories 1..K in the data's class order. Written by
    :func:`convert_dataset` into afm's cache (``~/.cache/afmcli/datasets/``; images linked) and
    kept while the data are unchanged; nothing is written beside the data."""
    dataset = open_dataset(data, split=split)
    if split not in dataset.splits:
        raise ParameterError(f"{data}: no split {split!r} (it has {', '.join(dataset.splits)}); "
                             "choose one with {split}", "split")
    key = hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:16]
    folder = cache_folder("datasets", key)
    with output_lock(folder, "afm (dataset cache)", wait=True):  # a run converting it now: wait, then reuse
        [done] = convert_dataset(dataset, folder, [split], reuse=True)
    return done.ann_file, done.images
