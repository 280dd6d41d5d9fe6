"""Synthetic drone sequences with ground-truth tracks, in VisDrone-MOT's layout.

    OUT/sequences/<seq>/0000001.jpg ...   the frames (numbered from 1)
    OUT/annotations/<seq>.txt             frame,id,x,y,w,h,score,category,truncation,occlusion

A sequence is a static aerial background (afmcli.data.synth's soil, roofs and roads)
seen by a hovering camera, with objects of VisDrone's classes (afmcli.data.synth's
styles) that move at constant speed, stop for a while and go on, enter and leave
through the border, and cross each other in pairs of one class (the case that swaps
ids). Ids are 1.. per sequence; a crowd of faded tiny objects is one ignored region
(score 0, category 0, id 0) on every frame. Boxes are clipped to the image: a clipped
box has truncation 1; occlusion is 0/1/2 as in afmcli.data.synth (covered by objects
drawn later, which are the ones with higher ids).

Everything about sequence ``index`` comes from ``default_rng([seed, SEQUENCE_SALT, index])``
(and per object from ``[seed, SEQUENCE_SALT, index, id]``), so a seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.data.synth import CLASS_STYLES, draw_background, draw_object, object_box, occlusion_levels
from afmcli.errors import ParameterError
from afmcli.io import atomic_path
from afmcli.parallel import worker_pool
from afmcli.progress import track

SEQUENCE_SALT = 0x5E9
# The classes VisDrone-MOT evaluates (pedestrian, car, van, truck, bus) and their shares here.
TRACKED_CLASSES = (1, 4, 5, 6, 9)
TRACKED_SHARES = (0.3, 0.4, 0.12, 0.1, 0.08)


@dataclass(frozen=True)
class Track:
    """One object: its box size, category, and where its box centre is at each frame."""

    id: int
    category: int
    size: tuple[float, float]  # w, h in pixels
    start: int  # first frame (1-based) it exists
    origin: tuple[float, float]  # centre at ``start``
    velocity: tuple[float, float]  # pixels per frame while moving
    stop: tuple[int, int]  # frames [a, b) in which it stands still (a == b: never)

    def centre(self, frame: int) -> np.ndarray:
        """Centre at ``frame``: it moves every frame from ``start`` except in its stop."""
        moved = frame - self.start - np.clip(min(frame, self.stop[1]) - self.stop[0], 0, None)
        return np.array(self.origin) + moved * np.array(self.velocity)

    def box(self, frame: int) -> np.ndarray:
        (cx, cy), (w, h) = self.centre(frame), self.size
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def sequence_name(index: int) -> str:
    return f"synth_seq_{index:04d}"


def _size(rng: np.random.Generator, category: int, scale: float) -> tuple[float, float]:
    box = object_box(rng, CLASS_STYLES[category].size, scale, (0.0, 0.0), turnable=False)
    return float(round(box[2] - box[0])), float(round(box[3] - box[1]))


def plan_tracks(rng: np.random.Generator, frames: int, width: int, height: int, scale: float,
                objects: int, crossings: int) -> list[Track]:
    """``objects`` free movers (some entering from outside, some born late, a third stopping
    for a while) and ``crossings`` pairs of one class that meet at a point inside the image."""
    tracks: list[Track] = []

    def add(category, size, start, origin, velocity, stop=(0, 0)):
        tracks.append(Track(len(tracks) + 1, int(category), size, int(start), (float(origin[0]), float(origin[1])),
                            (float(velocity[0]), float(velocity[1])), (int(stop[0]), int(stop[1]))))

    shares = np.array(TRACKED_SHARES) / sum(TRACKED_SHARES)
    for _ in range(objects):
        category = rng.choice(TRACKED_CLASSES, p=shares)
        speed = rng.uniform(0.5, 3.0) * scale * (1.0 if category == 1 else 1.6)
        angle = rng.uniform(0, 2 * np.pi)
        start = 1 if rng.random() < 0.7 else int(rng.integers(1, max(2, frames // 2)))
        if rng.random() < 0.25:  # enters through the border, heading inwards
            side = rng.integers(4)
            origin = [(-10, rng.uniform(0, height)), (width + 10, rng.uniform(0, height)),
                      (rng.uniform(0, width), -10), (rng.uniform(0, width), height + 10)][side]
            angle = [0.0, np.pi, np.pi / 2, -np.pi / 2][side] + rng.uniform(-0.6, 0.6)
        else:
            origin = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height)
        stop = (0, 0)
        if rng.random() < 0.35:
            a = int(rng.integers(start, start + max(1, frames // 2)))
            stop = (a, a + int(rng.integers(3, max(4, frames // 3))))
        add(category, _size(rng, category, scale), start, origin, (speed * np.cos(angle), speed * np.sin(angle)),
            stop)
    for _ in range(crossings):
        category = rng.choice(TRACKED_CLASSES, p=shares)
        size = _size(rng, category, scale)
        meet = np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height])
        t_meet = int(rng.integers(max(2, frames // 3), max(3, 2 * frames // 3)))
        speed = rng.uniform(1.0, 2.5) * scale * (1.0 if category == 1 else 1.6)
        angle = rng.uniform(0, 2 * np.pi)
        for turn in (0.0, rng.uniform(0.6, 2.5)):  # the second crosses at an angle
            v = speed * np.array([np.cos(angle + turn), np.sin(angle + turn)])
            add(category, size, 1, meet - (t_meet - 1) * v, v)
    return tracks


def synth_sequence(seed: int, index: int, frames: int, width: int, height: int,
                   objects: int | None = None, crossings: int = 2):
    """Yield ``(frame, image, rows)`` for frames 1..``frames``: the BGR uint8 frame and its
    VisDrone-MOT ground-truth rows (K, 10), objects by id then the ignored region."""
    rng = np.random.default_rng([seed, SEQUENCE_SALT, index])
    background, _roads = draw_background(rng, width, height)
    scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.6))))
    if objects is None:
        objects = max(4, int(width * height / 1e6 * 25))
    regions = []
    if rng.random() < 0.7:  # a crowd too small to label: one ignored region
        rw, rh = (int(v) for v in rng.integers(50, max(51, min(width, height) // 3), 2))
        rx, ry = int(rng.integers(0, width - rw)), int(rng.integers(0, height - rh))
        regions.append((rx, ry, rw, rh))
        for _ in range(int(rw * rh / 300)):
            category = int(rng.choice(list(CLASS_STYLES)))
            style = CLASS_STYLES[category]
            centre = (rx + rng.uniform(0, rw), ry + rng.uniform(0, rh))
            draw_object(background, object_box(rng, style.size, 0.4, centre), style, rng, fade=0.4)
    tracks = plan_tracks(rng, frames, width, height, scale, objects, crossings)
    for frame in range(1, frames + 1):
        img = background.copy()
        rows, boxes = [], []
        for t in tracks:
            if frame < t.start:
                continue
            box = np.round(t.box(frame))
            clipped = np.clip(box, 0, [width, height, width, height])
            if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
                continue  # outside the image (not yet in, or gone)
            # A fixed generator per object: its colour does not flicker from frame to frame.
            draw_object(img, box, CLASS_STYLES[t.category], np.random.default_rng([seed, SEQUENCE_SALT, index, t.id]))
            truncated = int((box != clipped).any())
            rows.append([frame, t.id, clipped[0], clipped[1], clipped[2] - clipped[0], clipped[3] - clipped[1], 1,
                         t.category, truncated, 0])
            boxes.append(clipped)
        rows = np.array(rows, dtype=np.float64).reshape(-1, 10)
        rows[:, 9] = occlusion_levels(np.array(boxes, dtype=np.float64).reshape(-1, 4))
        region_rows = np.array([[frame, 0, *r, 0, 0, 0, 0] for r in regions], dtype=np.float64).reshape(-1, 10)
        yield frame, cv2.GaussianBlur(img, (3, 3), 0.6), np.concatenate([rows, region_rows])


def _write_sequence(job: tuple) -> np.ndarray:
    """Worker: write one sequence's frames and annotation file; returns [frames, boxes, ids]."""
    out, seed, index, frames, width, height, objects, crossings = job
    name = sequence_name(index)
    folder = out / "sequences" / name
    folder.mkdir(parents=True)
    lines, boxes, ids = [], 0, set()
    for frame, img, rows in synth_sequence(seed, index, frames, width, height, objects, crossings):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        (folder / f"{frame:07d}.jpg").write_bytes(buf.tobytes())
        lines.append(format_visdrone_lines(rows))  # whole pixels: integers
        objects_here = rows[rows[:, 7] > 0]
        boxes += len(objects_here)
        ids.update(objects_here[:, 1].astype(int).tolist())
    (out / "annotations" / f"{name}.txt").write_text("".join(lines))
    return np.array([frames, boxes, len(ids)])


def write_synth_sequences(out: Path, sequences: int, frames: int, seed: int, width: int = 640, height: int = 360,
                          objects: int | None = None, crossings: int = 2, workers: int = 0) -> dict:
    """Write OUT/sequences/<seq>/*.jpg and OUT/annotations/<seq>.txt atomically; returns counts."""
    if sequences < 1 or frames < 2:
        raise ParameterError(f"{{sequences}} must be at least 1 and {{frames}} at least 2, got {sequences} and "
                             f"{frames}", "sequences", "frames")
    if width < 64 or height < 64:
        raise ParameterError("{width} and {height} must each be at least 64", "width", "height")
    if (objects is not None and objects < 0) or crossings < 0:
        raise ParameterError("{objects} and {crossings} must be >= 0", "objects", "crossings")
    with atomic_path(out) as tmp:
        (tmp / "sequences").mkdir(parents=True)
        (tmp / "annotations").mkdir()
        jobs = [(tmp, seed, i, frames, width, height, objects, crossings) for i in range(1, sequences + 1)]
        with worker_pool(workers, sequences) as pool:
            counts = sum(track(pool.imap(_write_sequence, jobs), "Drawing sequences", total=sequences))
    return dict(zip(("frames", "boxes", "tracks"), map(int, counts)))
