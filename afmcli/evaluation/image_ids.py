"""The images `afm infer` ran on, and its image ids checked against the ground truth's.

`afm infer` numbers a folder's images 1..N in its own listing, a COCO json or a dataset by
their own ids; ``OUT/images.json`` records the file name of every image id it wrote
(``[{"id", "file_name"}, ...]``, relative to the source's root). `afm evaluate` compares each
with the ground truth's file name of that id by relative path (afmcli.data.images.image_key;
where one side stores a prefix, by its whole trailing components), never by stem alone:
ids that name other files are matched by file name (one warning), files the ground truth
lacks are one error, never a silent score.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from afmcli.data.coco_check import Results
from afmcli.data.images import image_key
from afmcli.errors import AfmError, warn

# The record of the images a run's detections are of, beside predictions.json.
IMAGES_FILE = "images.json"


def read_prediction_images(pred) -> tuple[Path, dict[int, str]] | None:
    """``OUT/images.json`` beside a predictions json `afm infer` wrote (its path, and id ->
    file_name); None for detections from elsewhere."""
    if not isinstance(pred, (str, Path)) or Path(pred).is_dir():
        return None
    path = Path(pred).parent / IMAGES_FILE
    if not path.is_file():
        return None
    try:
        records = {r["id"]: r["file_name"] for r in json.loads(path.read_text(encoding="utf-8"))}
        if not all(type(i) is int and isinstance(f, str) and f for i, f in records.items()):
            raise TypeError("every image needs an integer id and a file_name")
    except (ValueError, KeyError, TypeError) as exc:
        raise AfmError(f"{path}: not an image list written by afm ({exc})") from None
    return path, records


def _parts(file_name: str) -> tuple[str, ...]:
    return tuple(image_key(file_name).split("/"))


def _same(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One relative path is the other's whole trailing components."""
    n = min(len(a), len(b))
    return a[-n:] == b[-n:]


def gt_image_ids(recorded: dict[int, str], gt_images: list[dict], record, gt_source) -> dict[int, int] | None:
    """None when every recorded image id names its own file in the ground truth (its
    ``gt_images`` records); else the ground truth's id of each recorded id, by file name,
    said in one warning. A file not (or not once) in the ground truth is one error."""
    gt_parts = {img["id"]: _parts(img["file_name"]) for img in gt_images}
    if all(i in gt_parts and _same(_parts(f), gt_parts[i]) for i, f in recorded.items()):
        return None
    by_path: dict[tuple[str, ...], list[int]] = {}
    by_suffix: dict[tuple[str, ...], list[int]] = {}  # every whole trailing part of each gt path
    for gt_id, parts in gt_parts.items():
        by_path.setdefault(parts, []).append(gt_id)
        for k in range(len(parts)):
            by_suffix.setdefault(parts[k:], []).append(gt_id)
    mapping, taken, missing, ambiguous = {}, set(), [], []
    for pred_id, file_name in recorded.items():
        parts = _parts(file_name)
        ids = by_suffix.get(parts) or [i for k in range(1, len(parts)) for i in by_path.get(parts[k:], [])]
        if not ids:
            missing.append(file_name)
        elif len(ids) > 1 or ids[0] in taken:
            ambiguous.append(file_name)
        else:
            mapping[pred_id] = ids[0]
            taken.add(ids[0])
    if missing or ambiguous:
        why = (f"{len(missing)} of the {len(recorded)} images the detections are of are not in it (first: "
               f"{missing[0]})" if missing else f"{ambiguous[0]} matches more than one image, or one matched already")
        raise AfmError(f"{record}: the detections' images do not match {gt_source}: {why}; run `afm infer` with the "
                       "ground truth's json or dataset as the source, so that the image ids are its own")
    pred_id = next(i for i, f in recorded.items() if i not in gt_parts or not _same(_parts(f), gt_parts[i]))
    warn(f"{record}: the detections number their images otherwise than {gt_source} (image {pred_id} is "
         f"{recorded[pred_id]}, the ground truth's image {mapping[pred_id]}); the {len(mapping)} images are "
         "matched by file name")
    return mapping


def renumbered(results: Results, mapping: dict[int, int], record) -> Results:
    """``results`` with the ground truth's image ids (``mapping`` of :func:`gt_image_ids`)."""
    unknown = ~np.isin(results.image_ids, list(mapping))
    if unknown.any():
        raise AfmError(f"{record}: no image {int(results.image_ids[np.flatnonzero(unknown)[0]])}, which the "
                       "detections name")
    ids = np.array([mapping[i] for i in results.image_ids.tolist()], dtype=np.int64)
    return dataclasses.replace(results, image_ids=ids)
