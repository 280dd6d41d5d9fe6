"""Inputs of `afm evaluate --task mot` -> `MotSequence` list, as evaluateTrackB.m reads them.

Sequences are the sub-folders of the sequences folder (VisDrone-MOT's ``sequences/<seq>/``),
in sorted order (the toolkit's ``dir`` listing); a sequence's frame size is its first image's
(sorted by name). Ground truth is ``<annotations>/<seq>.txt``, results ``<pred>/<seq>.txt``,
rows ``frame, id, x, y, w, h, score, category, truncation, occlusion``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from afmcli.data.images import image_size, list_images
from afmcli.data.visdrone_format import data_line_numbers, read_visdrone_file
from afmcli.errors import AfmError, warn
from afmcli.evaluation.mot import CATEGORY, EVAL_CLASSES, FRAME, ID, MotResult, MotSequence, evaluate_sequences

MOT_FIELDS = 10


def read_mot_file(path: Path) -> np.ndarray:
    """One VisDrone-MOT file: (N, 10) float64 rows in file order, checked: frames are whole
    numbers from 1, ids whole numbers, categories VisDrone's 0..11 (file:line otherwise)."""
    rows = read_visdrone_file(path, num_fields=MOT_FIELDS, size_columns=(4, 5))
    problems = (
        ((rows[:, FRAME] < 1) | (rows[:, FRAME] != np.floor(rows[:, FRAME])), "frames are numbered 1, 2, ..."),
        (rows[:, ID] != np.floor(rows[:, ID]), "track ids are whole numbers"),
        (~np.isin(rows[:, CATEGORY], np.arange(12)), "categories are VisDrone's 0..11"),
    )
    for bad, rule in problems:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            line = data_line_numbers(path.read_text(encoding="utf-8-sig"))[k]
            raise AfmError(f"{path}:{line}: {rule}: {','.join(f'{v:g}' for v in rows[k])}")
    return rows


def _sequence_folders(images_dir: Path) -> list[Path]:
    if not images_dir.is_dir():
        raise AfmError(f"{images_dir}: no such sequences folder")
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir())
    if not folders:
        hint = " (it holds the frames of one sequence: give the folder above it)" if list_images(images_dir) else ""
        raise AfmError(f"{images_dir}: no sequence folders (expected SEQUENCES/<seq>/0000001.jpg){hint}")
    return folders


def load_mot_sequences(gt_dir: Path, pred_dir: Path, images_dir: Path) -> list[MotSequence]:
    """Every sequence folder of ``images_dir`` with its ground truth and results. A missing
    ground-truth file is an error; a missing result file is a warning (no tracks), unless
    all are missing."""
    gt_dir, pred_dir, images_dir = Path(gt_dir), Path(pred_dir), Path(images_dir)
    for folder, what in ((gt_dir, "annotations"), (pred_dir, "results")):
        if not folder.is_dir():
            raise AfmError(f"{folder}: no such {what} folder")
    sequences, missing = [], []
    for folder in _sequence_folders(images_dir):
        frames = list_images(folder)
        if not frames:
            raise AfmError(f"{folder}: no frames (images) in this sequence folder")
        gt_path = gt_dir / f"{folder.name}.txt"
        if not gt_path.is_file():
            raise AfmError(f"{gt_path}: no ground truth for sequence {folder.name}")
        pred_path = pred_dir / f"{folder.name}.txt"
        if pred_path.is_file():
            pred = read_mot_file(pred_path)
        else:
            missing.append(pred_path.name)
            pred = np.zeros((0, MOT_FIELDS))
        width, height = image_size(frames[0], complete=False)
        sequences.append(MotSequence(folder.name, height, width, read_mot_file(gt_path), pred))
    if len(missing) == len(sequences):
        hint = (f"; the VisDrone-MOT files of `afm track` are in {pred_dir / 'mot'}"
                if (pred_dir / "mot" / missing[0]).is_file() else "")
        raise AfmError(f"{pred_dir}: no result file for any of the {len(sequences)} sequences "
                       f"(expected {missing[0]}, ...){hint}")
    if missing:
        warn(f"{pred_dir}: {len(missing)} of {len(sequences)} result files missing (no tracks): "
             f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
    pred_rows = np.concatenate([s.pred for s in sequences])
    if len(pred_rows) and not np.isin(pred_rows[:, CATEGORY], list(EVAL_CLASSES.values())).any():
        classes = ", ".join(f"{name} {category}" for name, category in EVAL_CLASSES.items())
        warn(f"{pred_dir}: no result row has an evaluated category ({classes}); are the categories VisDrone's?")
    return sequences


def evaluate_mot(gt_dir, pred_dir, images_dir) -> MotResult:
    """VisDrone2019-MOT's official numbers (+ HOTA) of the results in ``pred_dir``."""
    return evaluate_sequences(load_mot_sequences(gt_dir, pred_dir, images_dir))
