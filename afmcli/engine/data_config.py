"""`afm train --data DATA`: the dataset written in afm's layout inside the work dir, and
every key of a config that depends on it set from the data.

What a hand-made mmdet config needs for a new class list, set here for the shipped
configs and any config inheriting them: every ``num_classes`` in the model (the main
head, AFMNet's HD head, any other), each dataloader's datasets (``data_root``,
``ann_file``, ``data_prefix``, ``metainfo.classes``), the evaluators' ``ann_file``
and the checkpoint hook's ``save_best`` key. afm's ``VisDroneMetric`` scores every class
list (afmcli/evaluation/metric.py: the toolkit's view and the COCO view for VisDrone's ten
classes, the COCO view by class name for any other), the evaluator `afm evaluate` runs.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from afmcli.data.convert import ConvertStats
from afmcli.data.datasets import ConvertedSplit, convert_dataset, open_dataset
from afmcli.data.layout import DatasetPaths
from afmcli.data.readers.base import SplitData
from afmcli.engine.class_keys import num_classes_in, set_num_classes
from afmcli.data.visdrone_format import CLASSES as VISDRONE_CLASSES
from afmcli.errors import AfmError, few, warn

DATA_FOLDER = "data"  # inside the work dir: afm's copy of the dataset (links, json, crops)
COCO_SAVE_BEST = "coco/bbox_mAP_50"  # what mmdet's CocoMetric reports
SAVE_BEST = "coco/AP50"  # VisDroneMetric's key for any class list (the shipped configs' choice)
VAL_SPLITS = ("val", "valid", "validation")
TEST_SPLITS = ("test", "test-dev")


@dataclass
class PreparedData:
    """A dataset written in afm's layout for training: its classes and the splits the
    dataloaders read (``val`` is ``train`` when the data have no validation split)."""

    classes: tuple[str, ...]
    train: ConvertedSplit
    val: ConvertedSplit
    test: ConvertedSplit | None
    splits: list[ConvertedSplit]


def prepare_data(data: str | os.PathLike, work_dir: str | os.PathLike, slice_size: int | Sequence[int] | None = None,
                 overlap: float = 0.25, skip_bad: bool = False, images: str | os.PathLike | None = None,
                 workers: int = 0, write: bool = True) -> PreparedData:
    """Write DATA's train, validation and test splits into ``work_dir``/data/ (afm's
    layout; train also as crops with ``slice_size``); a split written there before from
    the same files and options is kept (a resumed or repeated run re-cuts nothing). ``write=False``: where they are
    written, without reading or writing (the other ranks of a distributed run)."""
    dataset = open_dataset(data, images)
    if "train" not in dataset.splits:
        raise AfmError(f"{dataset.source}: no 'train' split to train on (it has {', '.join(dataset.splits)})")
    val = next((s for s in VAL_SPLITS if s in dataset.splits), None)
    test = next((s for s in TEST_SPLITS if s in dataset.splits), None)
    names = ["train", *(s for s in (val, test) if s)]
    root = Path(work_dir) / DATA_FOLDER
    if write:
        done = convert_dataset(dataset, root, names, sliced=["train"], skip_bad=skip_bad,
                               slice_size=slice_size, overlap=overlap, workers=workers, reuse=True)
    else:
        done = [planned_split(root, name, bool(slice_size) and name == "train") for name in names]
    by_name = {s.name: s for s in done}
    if val is None and write:
        warn(f"{dataset.source}: no validation split (val:): validating on the training images")
    return PreparedData(dataset.classes, by_name["train"], by_name[val or "train"],
                        by_name[test] if test else None, done)


def planned_split(root: Path, name: str, sliced: bool) -> ConvertedSplit:
    """Where :func:`convert_dataset` writes split ``name`` under ``root`` (nothing read)."""
    paths, crops = DatasetPaths(root, name), DatasetPaths(root, f"{name}_sliced")
    return ConvertedSplit(name, SplitData(images_dir=paths.images), ConvertStats(), paths.ann_file, paths.images,
                          crops.ann_file if sliced else None, crops.images if sliced else None)


def _point(dataset, split: ConvertedSplit, classes, sliced: bool) -> None:
    ann, images = (split.sliced_ann_file, split.sliced_images) if sliced else (split.ann_file, split.images)
    root = images.parent.parent
    dataset.data_root = f"{root}/"
    dataset.ann_file = str(ann.relative_to(root))
    dataset.data_prefix = dict(img=f"{images.relative_to(root)}/")
    dataset.metainfo = dict(classes=tuple(classes))


def _metrics(evaluator) -> list:
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


def apply_data(cfg, prepared: PreparedData) -> None:
    """Point the config at ``prepared`` and size the model for its classes."""
    from afmcli.engine.train import leaf_datasets

    classes = prepared.classes
    # mmdet's configs share one dict between val and test (test_dataloader = val_dataloader): unshare.
    for key in ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator"):
        if cfg.get(key):
            cfg[key] = copy.deepcopy(cfg[key])
    if not set_num_classes(cfg.model, len(classes)):
        raise AfmError("the config's model has no num_classes to set: --data sizes the heads by it")
    if cfg.get("train_dataloader"):
        for leaf in leaf_datasets(cfg.train_dataloader.dataset):
            sliced = "_sliced" in str(leaf.get("ann_file", "")) and prepared.train.sliced_ann_file is not None
            _point(leaf, prepared.train, classes, sliced)
    for key, split in (("val_dataloader", prepared.val), ("test_dataloader", prepared.test or prepared.val)):
        if cfg.get(key):
            for leaf in leaf_datasets(cfg.get(key).dataset):
                _point(leaf, split, classes, sliced=False)
    visdrone = tuple(classes) == VISDRONE_CLASSES
    for key, split in (("val_evaluator", prepared.val), ("test_evaluator", prepared.test or prepared.val)):
        if not cfg.get(key):
            continue
        metrics = []
        for metric in _metrics(cfg.get(key)):
            metric["ann_file"] = str(split.ann_file)
            if metric.get("type") == "VisDroneMetric" and not visdrone:
                metric["classwise"] = True  # the data's class names in the log
            metrics.append(metric)
        cfg[key] = metrics[0] if len(metrics) == 1 else metrics
    checkpoint = (cfg.get("default_hooks") or {}).get("checkpoint")
    save_best = checkpoint.get("save_best") if checkpoint else None
    if isinstance(save_best, str) and save_best.startswith("visdrone/") and not visdrone \
            and "VisDroneMetric" in [m.get("type") for m in _metrics(cfg.get("val_evaluator") or {}) if m]:
        checkpoint.save_best = SAVE_BEST  # the toolkit's view is VisDrone's classes only


def _json_category_names(path: Path) -> list[str] | None:
    from afmcli.io import read_json

    coco = read_json(path)
    cats = coco.get("categories") if isinstance(coco, dict) else None
    return [c.get("name") for c in cats if isinstance(c, dict)] if isinstance(cats, list) else None


def check_class_keys(cfg, loaders: Sequence[str]) -> None:
    """A hand-made config's class keys, checked before training: each dataset's
    ``metainfo.classes`` against its json's category names, every ``num_classes`` against
    them, and ``save_best`` against what the evaluator reports. One line each, naming
    the key (mmdet itself fails later with "need at least one array to concatenate",
    or after the first validation with a KeyError)."""
    from afmcli.engine.train import inner_datasets

    counts = num_classes_in(cfg.get("model") or {})
    for key, dataset in inner_datasets(cfg, loaders):
        ann = Path(str(dataset.get("data_root") or "")) / str(dataset.get("ann_file") or "")
        classes = tuple((dataset.get("metainfo") or {}).get("classes") or ())
        if not dataset.get("ann_file") or not ann.is_file() or not classes:
            continue
        names = _json_category_names(ann)
        if names is not None and not set(names) & set(classes):
            raise AfmError(f"{key}: none of metainfo.classes ({few(classes, 4)}) "
                           f"is a category of {ann} ({few(names, 4)}); "
                           "set the dataset's metainfo=dict(classes=...), or train with --data DATA")
        wrong = sorted({c for c in counts if c != len(classes)})
        if wrong:
            raise AfmError(f"the model's num_classes is {wrong[0]} but {key}'s metainfo.classes has {len(classes)} "
                           f"({few(classes, 4)}): set every head's "
                           "num_classes (bbox_head, hd_head), or train with --data DATA")
    save_best = ((cfg.get("default_hooks") or {}).get("checkpoint") or {}).get("save_best")
    metrics = [m.get("type") for m in _metrics(cfg.get("val_evaluator") or {}) if m]
    if not isinstance(save_best, str):
        return
    if save_best.startswith("coco/") and "CocoMetric" in metrics \
            and "VisDroneMetric" not in metrics and not save_best.startswith("coco/bbox_"):
        raise AfmError(f"default_hooks.checkpoint.save_best {save_best!r} is not a key CocoMetric reports "
                       f"(it reports {COCO_SAVE_BEST}, coco/bbox_mAP, ...): set save_best='{COCO_SAVE_BEST}'")
    classes = next((tuple((d.get("metainfo") or {}).get("classes") or ())
                    for key, d in inner_datasets(cfg, loaders) if key == "val_dataloader"), ())
    if save_best.startswith("visdrone/") and "VisDroneMetric" in metrics and classes \
            and classes != VISDRONE_CLASSES:
        raise AfmError(f"default_hooks.checkpoint.save_best {save_best!r}: VisDroneMetric reports the toolkit's "
                       f"view for VisDrone's ten classes only, and val_dataloader's metainfo.classes are others "
                       f"({few(classes, 4)}): set save_best='{SAVE_BEST}'")
