"""An official VisDrone split folder -> the Datasets/ layout (COCO json, linked files, crops);
:class:`SplitWriter` writes any dataset's split there (afmcli/data/datasets.py).

    Datasets/
      images/<split>/                         images, linked (or copied)
      images/<split>_sliced/                  crops, with --slice (one size or several: multi-scale)
      labels/annotations/<split>_labels.json  our COCO json (see afmcli/data/coco.py)
      labels/annotations/<split>_sliced_labels.json
      labels/org/<split>_annotations/         the official txt, linked (or copied)

Everything is read and checked before anything is written; each output is
written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import cv2
import numpy as np

from afmcli.data.coco import ImageLabels, build_coco, check_gt_rows, visdrone_rows_to_labels
from afmcli.data.images import check_unique_keys, image_size, list_images, read_image, save_image
from afmcli.data.layout import DatasetPaths
from afmcli.data.slicing import boxes_in_window, check_overlap, slice_windows, warn_many_tiles
from afmcli.data.visdrone_format import data_line_numbers, read_visdrone_file
from afmcli.errors import AfmError, ParameterError
from afmcli.io import SharedFolder, atomic_path, check_replaceable, dump_json, read_json
from afmcli.parallel import worker_pool
from afmcli.progress import track

SPLITS = ("train", "val", "test-dev")


@dataclass
class ConvertStats:
    images: int = 0
    annotations: int = 0
    crowd: int = 0
    ignore_regions: int = 0
    others: int = 0
    clipped: int = 0
    dropped: int = 0
    skipped: list[str] = field(default_factory=list)
    crops: int = 0
    crop_annotations: int = 0
    reused: bool = False  # an earlier run wrote the same outputs from the same files: kept


def pair_split_files(src: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Match images/<stem>.<ext> with annotations/<stem>.txt, sorted by image name.

    Two images with one stem (a.jpg, a.png) are refused: which one a.txt labels
    cannot be told. Returns the pairs and one message per unmatched file.
    """
    img_dir, ann_dir = src / "images", src / "annotations"
    for folder in (img_dir, ann_dir):
        if not folder.is_dir():
            raise AfmError(f"{folder}: no such folder (expected an official VisDrone split "
                           f"folder with images/ and annotations/)")
    files = list_images(img_dir)
    check_unique_keys([p.name for p in files], img_dir)
    images = {p.stem: p for p in files}
    txts = {p.stem: p for p in sorted(ann_dir.glob("*.txt"))}
    problems = [f"{txts[s]}: annotation without an image ({s}.* not in {img_dir})"
                for s in sorted(txts.keys() - images.keys())]
    problems += [f"{images[s]}: image without an annotation file ({s}.txt not in {ann_dir})"
                 for s in sorted(images.keys() - txts.keys())]
    pairs = sorted(((images[s], txts[s]) for s in images.keys() & txts.keys()), key=lambda p: p[0].name)
    return pairs, problems


@dataclass
class SplitFiles:
    """The usable images of an official split folder: (image, txt) pairs, their COCO records
    (no ids yet) and labels; ``skipped``: why each other file was left out."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    labels: list[ImageLabels] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_split(src: Path, skip_bad: bool) -> SplitFiles:
    """Pair and read every image and label file of ``src``: the first bad one is an error,
    or with ``skip_bad`` skipped and listed. No usable image at all is an error."""
    pairs, problems = pair_split_files(src)
    if problems and not skip_bad:
        more = f" (and {len(problems) - 1} more; {{skip_bad}} skips them)" if len(problems) > 1 else ""
        raise ParameterError(problems[0] + more, "skip_bad")
    out = SplitFiles(skipped=list(problems))
    for image_path, txt_path in track(pairs, "Reading labels"):
        try:
            record, lab = load_image_labels(image_path, txt_path)
        except AfmError as exc:
            if not skip_bad:
                raise
            out.skipped.append(str(exc))
            continue
        out.pairs.append((image_path, txt_path))
        out.records.append(record)
        out.labels.append(lab)
    if not out.records:
        raise AfmError(f"{src}: no usable image with annotations")
    return out


def load_image_labels(image_path: Path, txt_path: Path) -> tuple[dict, ImageLabels]:
    """One image's COCO record (no id yet) and labels; AfmError names the bad file."""
    width, height = image_size(image_path)
    rows = read_visdrone_file(txt_path)
    bad = check_gt_rows(rows)
    if bad is not None:
        line = data_line_numbers(txt_path.read_text(encoding="utf-8-sig"))[bad]
        raise AfmError(f"{txt_path}:{line}: not ground truth (score must be 0 or 1, category "
                       f"0..11): {','.join(f'{v:g}' for v in rows[bad])}")
    record = {"file_name": image_path.name, "width": width, "height": height}
    return record, visdrone_rows_to_labels(rows, width, height)


def _xywh_to_xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def _xyxy_to_xywh(b: np.ndarray) -> list:
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def crop_labels(lab: ImageLabels, window, min_visible: float) -> ImageLabels:
    """An image's labels as seen in one crop (crop coordinates).

    Objects and category-11 boxes stay when at least ``min_visible`` of them is in
    the crop, clipped; ignored regions stay wherever they overlap the crop.
    """
    out = ImageLabels()
    index, boxes = boxes_in_window(_xywh_to_xyxy([a["bbox"] for a in lab.annotations]), window, min_visible)
    for i, box in zip(index, boxes):
        ann = {k: v for k, v in lab.annotations[i].items() if k != "visdrone_bbox"}
        ann["bbox"] = _xyxy_to_xywh(box)
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
        out.annotations.append(ann)
    _, regions = boxes_in_window(_xywh_to_xyxy(lab.ignore_regions), window, 0.0)
    out.ignore_regions = [_xyxy_to_xywh(box) for box in regions]
    index, boxes = boxes_in_window(_xywh_to_xyxy([o["bbox"] for o in lab.others]), window, min_visible)
    out.others = [{**lab.others[i], "bbox": _xyxy_to_xywh(box)} for i, box in zip(index, boxes)]
    return out


def crop_file_name(file_name: str, window) -> str:
    """SAHI's crop naming: <stem>_<x1>_<y1>_<x2>_<y2><ext>, in the image's own sub-folder."""
    path = PurePosixPath(file_name)
    return str(path.with_name(f"{path.stem}_{'_'.join(str(int(v)) for v in window)}{path.suffix}"))


def _write_crops(job: tuple[Path, str, np.ndarray, Path]) -> None:
    """Crops of the upright image (read_image turns an EXIF-rotated JPEG), its bit depth
    and channels kept (16-bit, grey, alpha)."""
    image_path, file_name, windows, out_dir = job
    img = read_image(image_path, cv2.IMREAD_UNCHANGED)
    (out_dir / file_name).parent.mkdir(parents=True, exist_ok=True)
    for window in windows:
        x1, y1, x2, y2 = (int(v) for v in window)
        save_image(out_dir / crop_file_name(file_name, window), img[y1:y2, x1:x2])


def link_or_copy(src: Path, dst: Path, copy: bool) -> None:
    """Hard link, else symlink, else copy (always copy with ``copy``)."""
    if not copy:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
        try:
            os.symlink(src.resolve(), dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def check_slicing(slice_size: int | Sequence[int] | None, overlap: float, min_visible: float) -> list[int]:
    """The crop sizes of ``slice_size`` (none, one or several), checked with the other options."""
    slice_sizes = [slice_size] if isinstance(slice_size, int) else list(slice_size or [])
    for size in slice_sizes:
        if size <= 0:
            raise ParameterError(f"{{slice_size}} must be a positive size, got {size}", "slice_size")
    if not 0 <= min_visible <= 1:
        raise ParameterError(f"{{min_visible}} must be in [0, 1], got {min_visible}", "min_visible")
    check_overlap(overlap)
    return slice_sizes


def convert_split(src: Path, out: Path, split: str, copy: bool = False, skip_bad: bool = False,
                  slice_size: int | Sequence[int] | None = None, overlap: float = 0.25,
                  min_visible: float = 0.5, workers: int = 0) -> ConvertStats:
    """Convert one official split folder into the Datasets/ root ``out``.

    ``slice_size``: crop size, or several (multi-scale crops, all in one sliced set).
    """
    if split not in SPLITS:
        raise ParameterError(f"{{split}} must be one of {', '.join(SPLITS)}, got {split!r}", "split")
    slice_sizes = check_slicing(slice_size, overlap, min_visible)
    writer = SplitWriter(Path(out), split, bool(slice_sizes), org_labels=True, command="afm convert-visdrone")
    split_files = read_split(Path(src), skip_bad)
    stats = writer.write([image for image, _ in split_files.pairs], split_files.records, split_files.labels,
                         copy=copy, slice_sizes=slice_sizes, overlap=overlap, min_visible=min_visible,
                         workers=workers, org_labels=[txt for _, txt in split_files.pairs])
    stats.skipped.extend(split_files.skipped)
    return stats


class SplitWriter:
    """Writes one split into the Datasets/ root: images/<split>/ (links, the records'
    relative paths), labels/annotations/<split>_labels.json, with ``sliced`` the crops
    images/<split>_sliced/ and their json, with ``org_labels`` the official txt files.

    Built before the data are read, so that a folder afm may not replace is refused first.
    """

    def __init__(self, out: Path, split: str, sliced: bool, org_labels: bool = False,
                 command: str = "afm convert"):
        self.paths = DatasetPaths(Path(out), split)
        self.sliced = DatasetPaths(Path(out), f"{split}_sliced")
        outputs = [(self.paths.images, "images/<split>")]
        if org_labels:
            outputs.append((self.paths.org_labels, "labels/org/<split>_annotations"))
        if sliced:
            outputs.append((self.sliced.images, "images/<split>_sliced"))
        for folder, what in outputs:
            check_replaceable(folder, what)
        # labels/annotations/ is shared with the user: afm replaces only the jsons it wrote there.
        self.annotations = SharedFolder(self.paths.ann_file.parent, command, "out")
        self.json_names = [self.paths.ann_file.name] + ([self.sliced.ann_file.name] if sliced else [])
        self.annotations.check(self.json_names)

    def write(self, files: Sequence[Path], records: list[dict], labels: list[ImageLabels], classes=None,
              copy: bool = False, slice_sizes: Sequence[int] = (), overlap: float = 0.25,
              min_visible: float = 0.5, workers: int = 0, org_labels: Sequence[Path] | None = None,
              reuse: bool = False) -> ConvertStats:
        """``files[i]`` is the image of ``records[i]`` (file_name relative, width and height
        upright) and ``labels[i]``; ``classes`` names categories 1..K (VisDrone's by default).

        ``reuse``: the jsons record (COCO's ``info.afm_source``) a fingerprint of what they
        were made from (labels, options, each file's size and time); when the outputs of an
        earlier run carry the same one, they are kept as they are (no re-linking, no re-cutting)."""
        stats = ConvertStats()
        coco = build_coco(records, labels, classes)
        stats.images = len(coco["images"])
        stats.annotations = len(coco["annotations"])
        stats.crowd = sum(a["iscrowd"] for a in coco["annotations"])
        stats.ignore_regions = sum(len(lab.ignore_regions) for lab in labels)
        stats.others = len(coco["others"])
        stats.clipped = sum(lab.clipped for lab in labels)
        stats.dropped = sum(lab.dropped for lab in labels)
        if reuse:
            coco["info"] = {"afm_source": _fingerprint(coco, [*files, *(org_labels or [])], copy, slice_sizes,
                                                       overlap, min_visible)}
            if self._reusable(coco["info"], stats, bool(slice_sizes), org_labels is not None):
                return stats
        for size in slice_sizes:
            warn_many_tiles([(r["width"], r["height"]) for r in records], size, overlap)
        with contextlib.ExitStack() as stack:
            stage = stack.enter_context(self.annotations.writing(self.json_names))
            img_tmp = stack.enter_context(atomic_path(self.paths.images))
            img_tmp.mkdir()
            for image_path, record in track(list(zip(files, records)), "Linking files"):
                dst = img_tmp / record["file_name"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(image_path, dst, copy)
            if org_labels is not None:
                txt_tmp = stack.enter_context(atomic_path(self.paths.org_labels))
                txt_tmp.mkdir()
                for txt_path in org_labels:
                    link_or_copy(txt_path, txt_tmp / txt_path.name, copy)
            if slice_sizes:
                _write_sliced(self.sliced, files, records, labels, classes, slice_sizes, overlap, min_visible,
                              workers, stats, stage, coco.get("info"))
            dump_json(stage(self.paths.ann_file.name), coco)
        return stats

    def _reusable(self, info: dict, stats: ConvertStats, sliced: bool, org_labels: bool) -> bool:
        """Whether this split's outputs are an earlier run's from the same fingerprint (then
        ``stats`` gets their crop counts)."""
        folders = [self.paths.images] + ([self.sliced.images] if sliced else []) + \
            ([self.paths.org_labels] if org_labels else [])
        jsons = [self.paths.ann_file] + ([self.sliced.ann_file] if sliced else [])
        if not all(f.is_dir() for f in folders) or not all(j.is_file() for j in jsons) \
                or not set(j.name for j in jsons) <= self.annotations.owned():
            return False
        try:
            loaded = [read_json(j) for j in jsons]
        except AfmError:
            return False
        if any(not isinstance(c, dict) or c.get("info") != info for c in loaded):
            return False
        if sliced:
            stats.crops, stats.crop_annotations = len(loaded[1]["images"]), len(loaded[1]["annotations"])
        stats.reused = True
        return True


def _fingerprint(coco: dict, files: Sequence[Path], *options) -> str:
    """What a split's outputs are made from: its json, the options, each source file's path, size, time."""
    import hashlib

    digest = hashlib.sha1(json.dumps([coco, list(options)], sort_keys=True).encode())
    for path in files:
        st = Path(path).stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def multi_scale_windows(height: int, width: int, sizes: Sequence[int], overlap: float) -> np.ndarray:
    """The tiles of every size, in size order; a tile two sizes share (an image smaller than
    both gives the whole image) is listed once."""
    seen, out = set(), []
    for size in sizes:
        for window in slice_windows(height, width, size, size, overlap, overlap):
            if tuple(window) not in seen:
                seen.add(tuple(window))
                out.append(window)
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def _write_sliced(sliced: DatasetPaths, files, records, labels, classes, slice_sizes, overlap, min_visible,
                  workers, stats: ConvertStats, stage, info: dict | None = None) -> None:
    crop_records, crop_labs, jobs = [], [], []
    with atomic_path(sliced.images) as crop_tmp:
        crop_tmp.mkdir()
        for image_path, record, lab in zip(files, records, labels):
            windows = multi_scale_windows(record["height"], record["width"], slice_sizes, overlap)
            jobs.append((image_path, record["file_name"], windows, crop_tmp))
            for window in windows:
                crop_records.append({"file_name": crop_file_name(record["file_name"], window),
                                     "width": int(window[2] - window[0]), "height": int(window[3] - window[1]),
                                     "parent_file_name": record["file_name"], "window": [int(v) for v in window]})
                crop_labs.append(crop_labels(lab, window, min_visible))
        with worker_pool(workers) as pool:
            for _ in track(pool.imap_unordered(_write_crops, jobs), "Writing crops", total=len(jobs)):
                pass
        crop_coco = build_coco(crop_records, crop_labs, classes)
        if info is not None:
            crop_coco["info"] = info
        dump_json(stage(sliced.ann_file.name), crop_coco)
    stats.crops = len(crop_records)
    stats.crop_annotations = len(crop_coco["annotations"])
