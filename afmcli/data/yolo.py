"""The YOLO (ultralytics) text formats, and an official VisDrone split as a YOLO dataset.

Label and result lines are ``class x_center y_center width height [confidence]``, the
box normalised by the image size (6 decimals, as ultralytics' converter writes them),
the class a 0-based index into the model's classes (VisDrone's pedestrian = 0 ...
motor = 9). ``data.yaml`` names each split's image folder, relative to itself, and
the classes, as ultralytics' trainers read it (labels/<split>/ beside images/<split>/).

What ultralytics' own VisDrone converter (``visdrone2yolo`` in its VisDrone.yaml) drops,
:func:`convert_split_to_yolo` keeps:

- ignored regions (category 0) and ignored objects (score 0) are painted out of the
  images in ultralytics' letterbox grey, so that the detector is not taught that the
  people and cars in them are background (``keep_ignored`` leaves the pixels);
  objects mostly (at least half) under painted pixels lose their label, counted;
- "others" (category 11) are dropped and counted; ultralytics writes them as class 10,
  past its ten names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from afmcli.data.convert import SPLITS, link_or_copy, read_split
from afmcli.data.images import read_image, save_image
from afmcli.data.visdrone_format import CLASSES
from afmcli.errors import ParameterError
from afmcli.io import MARKER, SharedFolder, atomic_path, check_replaceable
from afmcli.parallel import worker_pool
from afmcli.progress import track

# ultralytics' letterbox padding: what its models see as "no image here".
PAINT = (114, 114, 114)
# An object this much under painted pixels has nothing left to learn from (the VisDrone
# toolkit drops objects half inside ignored regions the same way).
COVERED = 0.5
DATA_YAML = "data.yaml"
YAML_KEYS = {"train": "train", "val": "val", "test-dev": "test"}  # split -> ultralytics' key


def yolo_lines(classes: np.ndarray, boxes: np.ndarray, size: tuple[int, int],
               scores: np.ndarray | None = None) -> str:
    """YOLO lines of xyxy ``boxes`` in a (width, height) image, with ``scores`` for results."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale = np.array([size[0], size[1], size[0], size[1]], dtype=np.float64)
    xyxy = boxes / scale
    xywh = np.c_[(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]]
    cols = [xywh] if scores is None else [xywh, np.asarray(scores, dtype=np.float64).reshape(-1, 1)]
    return "".join(f"{int(c)} " + " ".join(f"{v:.6f}" for v in row) + "\n"
                   for c, row in zip(classes, np.concatenate(cols, axis=1)))


def data_yaml(splits: Sequence[str], names: Sequence[str] = CLASSES) -> str:
    """ultralytics' dataset yaml: each split's images/<split>, relative to the yaml's folder
    (no ``path`` key: ultralytics then takes the yaml's own folder), and the class names."""
    lines = ["# VisDrone in YOLO form (afm convert-visdrone --to-yolo); paths relative to this file"]
    lines += [f"{YAML_KEYS[s]}: images/{s}" for s in SPLITS if s in splits]
    lines += ["names:", *(f"  {k}: {name}" for k, name in enumerate(names))]
    return "\n".join(lines) + "\n"


def _spans(boxes_xywh: Sequence, width: int, height: int) -> np.ndarray:
    """Integer pixel spans x1, y1, x2, y2 (exclusive) that cover each box, inside the image."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    x1, y1 = np.floor(b[:, 0]), np.floor(b[:, 1])
    x2, y2 = np.ceil(b[:, 0] + b[:, 2]), np.ceil(b[:, 1] + b[:, 3])
    return np.c_[np.clip(x1, 0, width), np.clip(y1, 0, height), np.clip(x2, 0, width),
                 np.clip(y2, 0, height)].astype(np.int64)


def painted_mask(regions_xywh: Sequence, width: int, height: int) -> np.ndarray:
    """(height, width) bool: the pixels the boxes cover."""
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in _spans(regions_xywh, width, height):
        mask[y1:y2, x1:x2] = True
    return mask


def covered_fraction(boxes_xywh: Sequence, mask: np.ndarray) -> np.ndarray:
    """Fraction of each box's pixels that ``mask`` covers (integral image: no per-box copy)."""
    height, width = mask.shape
    spans = _spans(boxes_xywh, width, height)
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    x1, y1, x2, y2 = spans.T
    inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    area = (x2 - x1) * (y2 - y1)
    return np.divide(inside, area, out=np.zeros(len(spans)), where=area > 0)


@dataclass
class YoloStats:
    images: int = 0
    labels: int = 0
    painted_images: int = 0
    ignored_regions: int = 0  # category 0, painted
    ignored_objects: int = 0  # score 0, painted
    covered: int = 0  # objects whose label was dropped: mostly under painted pixels
    others: int = 0  # category 11, dropped
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Image:
    """One image's job: its file, what to paint (x, y, w, h boxes), its label text."""

    src: Path
    paint: list
    text: str


def _image_job(image_path: Path, record: dict, lab, keep_ignored: bool, stats: YoloStats) -> _Image:
    width, height = record["width"], record["height"]
    objects = [a for a in lab.annotations if not a["iscrowd"]]
    ignored = [a["bbox"] for a in lab.annotations if a["iscrowd"]]
    paint = [] if keep_ignored else [*lab.ignore_regions, *ignored]
    boxes = np.array([a["bbox"] for a in objects], dtype=np.float64).reshape(-1, 4)
    keep = covered_fraction(boxes, painted_mask(paint, width, height)) < COVERED if paint else \
        np.ones(len(boxes), dtype=bool)
    classes = np.array([a["category_id"] - 1 for a in objects], dtype=np.int64)
    xyxy = np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]
    stats.images += 1
    stats.labels += int(keep.sum())
    stats.covered += int((~keep).sum())
    stats.others += len(lab.others)
    stats.ignored_regions += len(lab.ignore_regions)
    stats.ignored_objects += len(ignored)
    stats.painted_images += bool(paint)
    return _Image(image_path, paint, yolo_lines(classes[keep], xyxy[keep], (width, height)))


def _write_image(job: tuple[_Image, Path, bool]) -> None:
    """Link (or copy) the image into ``folder``, or write it there painted; a JPEG stays a
    JPEG (OpenCV's quality 95)."""
    image, folder, copy = job
    dst = folder / image.src.name
    if not image.paint:
        link_or_copy(image.src, dst, copy)
        return
    pixels = read_image(image.src)
    height, width = pixels.shape[:2]
    pixels[painted_mask(image.paint, width, height)] = PAINT
    save_image(dst, pixels)


def convert_split_to_yolo(src: Path, out: Path, split: str, keep_ignored: bool = False, copy: bool = False,
                          skip_bad: bool = False, workers: int = 0) -> YoloStats:
    """An official split folder (images/, annotations/) -> ``out``/images/<split>/,
    ``out``/labels/<split>/ (one <stem>.txt per image, empty without objects) and
    ``out``/data.yaml (the splits converted into ``out`` so far)."""
    if split not in SPLITS:
        raise ParameterError(f"{{split}} must be one of {', '.join(SPLITS)}, got {split!r}", "split")
    out = Path(out)
    images, labels = out / "images" / split, out / "labels" / split
    for folder, what in ((images, "images/<split>"), (labels, "labels/<split>")):
        check_replaceable(folder, what)
    shared = SharedFolder(out, "afm convert-visdrone", "out")
    shared.check([DATA_YAML])
    split_files = read_split(Path(src), skip_bad)
    stats = YoloStats(skipped=split_files.skipped)
    jobs = [_image_job(image_path, record, lab, keep_ignored, stats)
            for (image_path, _), record, lab in zip(split_files.pairs, split_files.records, split_files.labels)]
    splits = [s for s in SPLITS if s == split or (out / "labels" / s / MARKER).is_file()]
    with shared.writing([DATA_YAML]) as stage, atomic_path(images) as img_tmp, atomic_path(labels) as txt_tmp:
        img_tmp.mkdir()
        txt_tmp.mkdir()
        with worker_pool(workers, len(jobs)) as pool:
            for _ in track(pool.imap_unordered(_write_image, [(j, img_tmp, copy) for j in jobs]), "Writing images",
                           total=len(jobs)):
                pass
        for job in jobs:
            (txt_tmp / f"{job.src.stem}.txt").write_text(job.text)
        stage(DATA_YAML).write_text(data_yaml(splits))
    return stats
