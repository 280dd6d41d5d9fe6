"""An ultralytics YOLO dataset: its ``data.yaml`` and the label files beside the images.

The rules are ultralytics' (``check_det_dataset``, ``img2label_paths``), with two
differences said in one line each below:

- ``names``: a list, or a dict {0: name, 1: name, ...} numbering the classes 0..K-1.
- ``path``: the dataset root; relative, it is taken from the yaml's folder (ultralytics
  takes it from its own datasets folder setting); absent, the yaml's folder.
- ``train``, ``val``, ``test``: an image folder (searched recursively), a ``.txt`` file
  listing images (a line ``./x.jpg`` is relative to the list's folder, any other relative
  line to the root), or a list of these; ``../x`` missing is looked for as ``x`` (Roboflow).
- an image's label file: its path with the last ``images`` folder replaced by ``labels``
  and the suffix by ``.txt``. An image without one, or with an empty one, is a
  background image.
- a label line: ``class x_center y_center width height`` normalised by the upright image
  (a JPEG's EXIF orientation applied, as ultralytics does), or ``class x1 y1 x2 y2 ...``
  (a segment: its bounding box). A class beyond ``names`` or a coordinate outside 0..1
  is an error naming the file and line (ultralytics drops such files with a warning).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from afmcli.data.images import image_size, is_image_file
from afmcli.data.readers.base import DatasetReader, SplitData, boxes_to_labels, dataset_root, skip_or_raise
from afmcli.errors import AfmError

YAML_SPLITS = ("train", "val", "test")
# Labels written with 6 decimals round 1.0000004 up: within this, a coordinate is in 0..1.
_ROUNDING = 1e-6


def _names(data: dict, source: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise AfmError(f"{source}: 'names' must number the classes 0..{len(keys) - 1}, got ids {keys}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise AfmError(f"{source}: 'names' must list the class names (a list, or a dict 0: name, ...)")
    names = [str(n) for n in names]
    if data.get("nc") is not None and data["nc"] != len(names):
        raise AfmError(f"{source}: 'nc' is {data['nc']} but 'names' has {len(names)} classes")
    return names


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    text = sb.join(text.rsplit(sa, 1)) if sa in text else text
    return Path(text).with_suffix(".txt")


def _listed_images(entry: Path, root: Path) -> list[Path]:
    """The images an entry of train/val/test names: a folder (recursively) or a .txt list."""
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if is_image_file(p) and p.is_file())
    if entry.suffix == ".txt" and entry.is_file():
        try:
            text = entry.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise AfmError(f"{entry}: cannot read the image list ({exc})") from None
        out = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            path = entry.parent / line[2:] if line.startswith("./") else root / line
            out.append(path)
        return out
    raise AfmError(f"{entry}: no such image folder or .txt image list")


def _entry(root: Path, entry: str) -> Path:
    """A train/val/test entry's path: absolute, or from the root; an entry ``../x`` that is not
    there is looked for as ``x`` under the root, as ultralytics does (Roboflow's exports write
    ``val: ../valid/images`` in a yaml beside ``valid/``)."""
    path = Path(entry)
    if path.is_absolute():
        return path
    if entry.startswith("../") and not (root / path).exists() and (root / entry[3:]).exists():
        return root / entry[3:]
    return root / path


class YoloDataset(DatasetReader):
    """``splits``: {name: list of folders or .txt lists}."""

    format = "yolo"

    def __init__(self, source: Path, classes, splits: dict, root: Path):
        super().__init__(source, classes, splits)
        self.root = root

    @classmethod
    def from_yaml(cls, source: Path, data: dict) -> "YoloDataset":
        root = dataset_root(source, data)
        splits = {}
        for key in YAML_SPLITS:
            value = data.get(key)
            if value:
                entries = value if isinstance(value, list) else [value]
                splits[key] = [_entry(root, e) for e in map(str, entries)]
        if "train" not in splits and "val" not in splits:
            raise AfmError(f"{source}: names no 'train' or 'val' images")
        return cls(source, _names(data, source), splits, root)

    def _read(self, entries: list[Path], skip_bad: bool) -> SplitData:
        files: list[Path] = []
        for entry in entries:
            files += _listed_images(entry, self.root)
        files = list(dict.fromkeys(files))
        folders = [e for e in entries if e.is_dir()]
        images_dir = folders[0] if len(folders) == 1 and len(entries) == 1 else \
            Path(os.path.commonpath([str(f.parent) for f in files])) if files else self.root
        data = SplitData(images_dir=images_dir)
        counts = dict.fromkeys(("images", "labels", "background images", "images without a label file",
                                "empty label files", "labels missing images", "clipped boxes",
                                "dropped empty boxes"), 0)
        used = set()
        for path in files:
            txt = label_path(path)
            used.add(txt)
            labelled = txt.is_file()
            try:
                if not path.is_file():
                    raise AfmError(f"{path}: no such image (listed in the split)")
                width, height = image_size(path)
                rows = read_label_file(txt, len(self.classes)) if labelled else None
            except AfmError as exc:
                skip_or_raise(data, exc, skip_bad)
                continue
            rows = np.zeros((0, 5)) if rows is None else rows
            boxes = np.c_[(rows[:, 1] - rows[:, 3] / 2) * width, (rows[:, 2] - rows[:, 4] / 2) * height,
                          rows[:, 3] * width, rows[:, 4] * height]
            lab = boxes_to_labels(boxes, rows[:, 0].astype(np.int64) + 1, np.zeros(len(rows)), width, height)
            data.files.append(path)
            data.records.append({"file_name": path.relative_to(images_dir).as_posix(),
                                 "width": width, "height": height})
            data.labels.append(lab)
            counts["images"] += 1
            counts["labels"] += len(lab.annotations)
            counts["background images"] += not lab.annotations
            counts["images without a label file"] += not labelled
            counts["empty label files"] += labelled and not len(rows)
            counts["clipped boxes"] += lab.clipped
            counts["dropped empty boxes"] += lab.dropped
        label_dirs = {label_path(f).parent for f in files}
        orphans = [t for d in label_dirs if d.is_dir() for t in d.glob("*.txt")
                   if t not in used and t.name != "classes.txt"]
        counts["labels missing images"] = len(orphans)
        counts["skipped bad files"] = len(data.skipped)
        data.counts = counts
        return data


def read_label_file(path: Path, num_classes: int) -> np.ndarray:
    """(N, 5) float64 rows class, x_center, y_center, width, height (normalised); a segment
    line becomes its bounding box. A bad line is an AfmError ``file:line: problem``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AfmError(f"{path}: cannot read the label file ({exc})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise AfmError(f"{where}: not numbers: {line.strip()[:80]!r}") from None
        if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
            raise AfmError(f"{where}: expected 'class x_center y_center width height' (5 numbers) or a "
                           f"segment 'class x1 y1 x2 y2 ...', got {len(values)} numbers")
        if not all(math.isfinite(v) for v in values):
            raise AfmError(f"{where}: not finite: {line.strip()[:80]!r}")
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise AfmError(f"{where}: class {fields[0]} is not one of the {num_classes} names (0..{num_classes - 1})")
        coords = np.asarray(values[1:])
        outside = (coords < -_ROUNDING) | (coords > 1 + _ROUNDING)
        if outside.any():
            raise AfmError(f"{where}: coordinate {fields[1 + int(np.flatnonzero(outside)[0])]} is outside 0..1 "
                           "(YOLO labels are normalised by the image's width and height)")
        coords = np.clip(coords, 0, 1)
        if len(values) == 5:
            rows.append([cls, *coords])
        else:
            xs, ys = coords[0::2], coords[1::2]
            rows.append([cls, (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, np.ptp(xs), np.ptp(ys)])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)
