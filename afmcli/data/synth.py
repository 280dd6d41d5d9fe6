"""Synthetic VisDrone-like images: 10 learnable classes on an aerial-like background.

Each class has its own saturated colour, shape, inner detail and aspect ratio
(CLASS_STYLES), so that a tiny detector learns them in minutes on a CPU; the
background (soil/vegetation noise, grey roads, muted roofs) avoids those colours.
Objects are mostly small (sizes follow a per-image altitude scale), come in dense
clusters, and the labels carry what real ones carry: score-0 (hard, faded)
boxes, category-0 ignored regions over crowds of tiny unlabelled objects,
category-11 "others", truncation at the border and occlusion by later objects.

Everything about image ``index`` comes from ``default_rng([seed, crc32(split), index])``,
so output is byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.errors import ParameterError
from afmcli.io import atomic_path
from afmcli.parallel import worker_pool
from afmcli.progress import track

# (width, height) of VisDrone-DET images and their rough shares in train.
VISDRONE_SIZES = ((1400, 1050), (1400, 788), (2000, 1500), (1920, 1080), (1360, 765), (960, 540))
VISDRONE_SIZE_SHARES = (0.44, 0.20, 0.12, 0.10, 0.08, 0.06)

# Objects per megapixel: log-normal around VisDrone's (first 50 train images: ~47).
DENSITY_MEDIAN = 40.0
DENSITY_SIGMA = 0.6


@dataclass(frozen=True)
class ClassStyle:
    colour: tuple[int, int, int]  # BGR
    size: tuple[float, float]  # w, h in pixels at altitude scale 1
    shape: str  # ellipse | rect | triangle | diamond
    detail: str  # none | dot | band | line | stripes
    share: float  # frequency among objects


# VisDrone ids 1..10: pedestrian, people, bicycle, car, van, truck, tricycle,
# awning-tricycle, bus, motor.
CLASS_STYLES = {
    1: ClassStyle((40, 40, 230), (9, 18), "ellipse", "none", 0.17),
    2: ClassStyle((0, 140, 255), (13, 14), "ellipse", "dot", 0.08),
    3: ClassStyle((0, 225, 225), (8, 19), "rect", "line", 0.05),
    4: ClassStyle((220, 90, 30), (30, 17), "rect", "band", 0.33),
    5: ClassStyle((235, 235, 235), (34, 21), "rect", "line", 0.08),
    6: ClassStyle((40, 200, 40), (50, 24), "rect", "band", 0.05),
    7: ClassStyle((200, 40, 200), (20, 18), "triangle", "none", 0.04),
    8: ClassStyle((225, 225, 0), (22, 20), "rect", "stripes", 0.04),
    9: ClassStyle((150, 110, 255), (70, 26), "rect", "stripes", 0.03),
    10: ClassStyle((130, 0, 110), (11, 16), "diamond", "dot", 0.13),
}
OTHERS_STYLE = ClassStyle((70, 110, 140), (14, 14), "rect", "dot", 0.0)
VEHICLES = (4, 5, 6, 9)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def image_size(rng: np.random.Generator, width: int | None, height: int | None) -> tuple[int, int]:
    if width and height:
        return int(width), int(height)
    return VISDRONE_SIZES[rng.choice(len(VISDRONE_SIZES), p=VISDRONE_SIZE_SHARES)]


def draw_background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list]:
    """Soil/vegetation texture, buildings and roads; returns the image and road segments."""
    soil, grass = np.array([70, 100, 125], np.float32), np.array([45, 90, 55], np.float32)
    coarse = rng.random((height // 64 + 2, width // 64 + 2, 1), dtype=np.float32)
    mix = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    img = soil * (1 - mix) + grass * mix
    img += rng.normal(0, 7, (height, width, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 8)):  # roofs: large, muted
        w, h = rng.integers(80, 320, 2)
        x, y = rng.integers(0, max(1, width - w)), rng.integers(0, max(1, height - h))
        shade = int(rng.integers(60, 150))
        colour = (shade, shade + int(rng.integers(-15, 15)), shade + int(rng.integers(0, 30)))
        cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
    roads = []
    for _ in range(rng.integers(1, 5)):
        if rng.random() < 0.5:
            y = int(rng.integers(0, height))
            p, q = (0, y), (width, int(np.clip(y + rng.integers(-height // 4, height // 4 + 1), 0, height)))
        else:
            x = int(rng.integers(0, width))
            p, q = (x, 0), (int(np.clip(x + rng.integers(-width // 4, width // 4 + 1), 0, width)), height)
        shade = int(rng.integers(95, 135))
        cv2.line(img, p, q, (shade, shade, shade), int(rng.integers(30, 90)))
        roads.append((p, q))
    return img, roads


def object_box(rng: np.random.Generator, size, scale: float, centre, turnable: bool = False) -> np.ndarray:
    """x1, y1, x2, y2 (float) of one object around ``centre``; ``turnable`` ones may turn 90 degrees."""
    w, h = np.array(size) * scale * np.exp(rng.normal(0, 0.25, 2))
    if turnable and rng.random() < 0.3:
        w, h = h, w
    w, h = max(w, 3.0), max(h, 3.0)
    return np.array([centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2])


def draw_object(img: np.ndarray, box, style: ClassStyle, rng: np.random.Generator, fade: float = 0.0) -> None:
    """Draw one object in its box (integer pixels), blended with the background by ``fade``."""
    x1, y1, x2, y2 = (int(v) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, img.shape[1]), min(y2, img.shape[0])
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    patch = img[y1:y2, x1:x2]
    canvas = patch.copy()
    h, w = canvas.shape[:2]
    colour = tuple(int(c) for c in np.clip(np.array(style.colour) * rng.uniform(0.8, 1.1)
                                           + rng.integers(-20, 21, 3), 0, 255))
    dark = tuple(int(c * 0.35) for c in colour)
    # Shapes span the object's full extent in the real (unclipped) box.
    ox, oy = int(box[0]) - x1, int(box[1]) - y1
    bw, bh = int(box[2]) - int(box[0]), int(box[3]) - int(box[1])
    if style.shape == "ellipse":
        cv2.ellipse(canvas, (ox + bw // 2, oy + bh // 2), (max(bw // 2, 1), max(bh // 2, 1)), 0, 0, 360, colour, -1)
    elif style.shape == "triangle":
        cv2.fillPoly(canvas, [np.array([[ox, oy + bh - 1], [ox + bw - 1, oy + bh - 1], [ox + bw // 2, oy]])], colour)
    elif style.shape == "diamond":
        cv2.fillPoly(canvas, [np.array([[ox + bw // 2, oy], [ox + bw - 1, oy + bh // 2],
                                        [ox + bw // 2, oy + bh - 1], [ox, oy + bh // 2]])], colour)
    else:
        cv2.rectangle(canvas, (ox, oy), (ox + bw - 1, oy + bh - 1), colour, -1)
    long_x = bw >= bh
    if style.detail == "dot":
        cv2.circle(canvas, (ox + bw // 2, oy + bh // 2), max(1, min(bw, bh) // 4), dark, -1)
    elif style.detail == "band":  # windscreen across the short side, near one end
        if long_x:
            cv2.rectangle(canvas, (ox + bw // 5, oy + 1), (ox + bw // 3, oy + bh - 2), dark, -1)
        else:
            cv2.rectangle(canvas, (ox + 1, oy + bh // 5), (ox + bw - 2, oy + bh // 3), dark, -1)
    elif style.detail == "line":  # along the long side
        if long_x:
            cv2.line(canvas, (ox, oy + bh // 2), (ox + bw - 1, oy + bh // 2), dark, 1)
        else:
            cv2.line(canvas, (ox + bw // 2, oy), (ox + bw // 2, oy + bh - 1), dark, 1)
    elif style.detail == "stripes":
        for k in range(2, bw if long_x else bh, 4):
            if long_x:
                cv2.line(canvas, (ox + k, oy), (ox + k, oy + bh - 1), dark, 1)
            else:
                cv2.line(canvas, (ox, oy + k), (ox + bw - 1, oy + k), dark, 1)
    patch[:] = cv2.addWeighted(canvas, 1 - fade, patch, fade, 0) if fade else canvas


def occlusion_levels(boxes: np.ndarray) -> np.ndarray:
    """VisDrone occlusion per box (0 none, 1 up to 50%, 2 more), covered by LATER boxes.

    The covered fraction is approximated by the largest single overlap.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    ix1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    iy1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    ix2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    iy2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    inter = np.triu(inter, k=1)  # only objects drawn after (on top of) this one
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    frac = inter.max(axis=1) / np.maximum(area, 1e-9)
    return np.where(frac == 0, 0, np.where(frac <= 0.5, 1, 2))


def _iou_max(box: np.ndarray, boxes: np.ndarray) -> float:
    if not len(boxes):
        return 0.0
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return float((inter / union).max())


def _centres(rng: np.random.Generator, n: int, width: int, height: int, roads: list, scale: float) -> np.ndarray:
    """Object centres: dense clusters (many on roads) plus a scattered part."""
    clusters = []
    for _ in range(1 + rng.poisson(3)):
        if roads and rng.random() < 0.6:
            (px, py), (qx, qy) = roads[rng.integers(len(roads))]
            t = rng.random()
            clusters.append((px + t * (qx - px), py + t * (qy - py)))
        else:
            clusters.append((rng.uniform(0, width), rng.uniform(0, height)))
    clusters = np.array(clusters)
    spread = rng.uniform(25, 110, len(clusters)) * scale
    which = rng.integers(len(clusters), size=n)
    pts = clusters[which] + rng.normal(0, 1, (n, 2)) * spread[which, None]
    scattered = rng.random(n) < 0.3
    pts[scattered] = rng.random((int(scattered.sum()), 2)) * [width, height]
    return pts


def synth_image(seed: int, split: str, index: int, width: int | None = None,
                height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image (BGR uint8) and its VisDrone ground-truth rows (N, 8)."""
    rng = image_rng(seed, split, index)
    width, height = image_size(rng, width, height)
    img, roads = draw_background(rng, width, height)
    scale = float(np.exp(rng.uniform(np.log(0.6), np.log(3.0))))  # altitude
    density = DENSITY_MEDIAN * np.exp(rng.normal(0, DENSITY_SIGMA))
    n = max(1, int(rng.poisson(density * width * height / 1e6)))
    classes = np.array(list(CLASS_STYLES))
    shares = np.array([s.share for s in CLASS_STYLES.values()])
    cats = rng.choice(classes, size=n, p=shares / shares.sum())

    # Ignored regions: a crowd of tiny faded objects, labelled as one region.
    regions = []
    for _ in range(rng.binomial(2, 0.3)):
        rw, rh = rng.integers(80, 260, 2)
        rx, ry = int(rng.integers(0, max(1, width - rw))), int(rng.integers(0, max(1, height - rh)))
        regions.append((rx, ry, int(rw), int(rh)))
        for _ in range(int(rw * rh / 400)):
            cat = int(rng.choice(classes))
            centre = (rx + rng.uniform(0, rw), ry + rng.uniform(0, rh))
            style = CLASS_STYLES[cat]
            draw_object(img, object_box(rng, style.size, 0.5, centre), style, rng, fade=0.4)

    def in_region(box):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return any(rx <= cx < rx + rw and ry <= cy < ry + rh for rx, ry, rw, rh in regions)

    boxes, kept_cats, scores = [], [], []
    n_others = int(rng.poisson(1.0))
    all_cats = np.concatenate([cats, np.full(n_others, 11)]).astype(np.int64)
    for cat, centre in zip(all_cats, _centres(rng, len(all_cats), width, height, roads, scale)):
        style = OTHERS_STYLE if cat == 11 else CLASS_STYLES[int(cat)]
        box = object_box(rng, style.size, scale, centre, turnable=cat in VEHICLES)
        box = np.round(box)
        if box[2] <= 1 or box[3] <= 1 or box[0] >= width - 1 or box[1] >= height - 1 or in_region(box):
            continue
        if _iou_max(box, np.array(boxes).reshape(-1, 4)) > 0.3:
            continue
        hard = cat != 11 and rng.random() < 0.05
        draw_object(img, box, style, rng, fade=0.6 if hard else 0.0)
        boxes.append(box)
        kept_cats.append(cat)
        scores.append(0 if hard else 1)
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    occlusion = occlusion_levels(boxes)
    truncated = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    # Labels stay in the image, except that, as in real labels, a few overshoot the
    # right/bottom edge by a pixel or two.
    overshoot = truncated & (rng.random(len(boxes)) < 0.3)
    limit = np.where(overshoot, 2, 0)
    x1, y1 = np.maximum(boxes[:, 0], 0), np.maximum(boxes[:, 1], 0)
    x2 = np.minimum(boxes[:, 2], width + limit)
    y2 = np.minimum(boxes[:, 3], height + limit)
    rows = np.stack([x1, y1, x2 - x1, y2 - y1, scores, kept_cats, truncated.astype(int), occlusion], axis=1)
    region_rows = np.array([[*r, 0, 0, 0, 0] for r in regions], dtype=np.float64).reshape(-1, 8)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return img, np.concatenate([rows.reshape(-1, 8), region_rows])


def label_counts(rows: np.ndarray) -> np.ndarray:
    """[objects, crowd (score 0), ignored regions, others] in VisDrone rows."""
    cats = rows[:, 5]
    objects = (cats > 0) & (cats < 11)
    return np.array([objects.sum(), (objects & (rows[:, 4] == 0)).sum(), (cats == 0).sum(), (cats == 11).sum()])


def _write_image(job: tuple) -> np.ndarray:
    """Worker: write one image and its label file; returns its `label_counts`."""
    out, seed, split, index, width, height = job
    img, rows = synth_image(seed, split, index, width, height)
    name = synth_name(split, index)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    (out / "images" / f"{name}.jpg").write_bytes(buf.tobytes())
    (out / "annotations" / f"{name}.txt").write_text(format_visdrone_lines(rows))
    return label_counts(rows)


def synth_name(split: str, index: int) -> str:
    return f"synth_{split}_{index:06d}"


def write_synth_split(out: Path, split: str, images: int, seed: int, width: int | None = None,
                      height: int | None = None, workers: int = 0) -> dict:
    """Write OUT/images/*.jpg and OUT/annotations/*.txt atomically; returns label counts."""
    if images < 1:
        raise ParameterError(f"{{images}} must be at least 1, got {images}", "images")
    if (width is None) != (height is None) or (width is not None and (width < 64 or height < 64)):
        raise ParameterError("{width} and {height} go together, each at least 64", "width", "height")
    with atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "annotations").mkdir()
        jobs = [(tmp, seed, split, i, width, height) for i in range(images)]
        with worker_pool(workers, images) as pool:
            counts = sum(track(pool.imap(_write_image, jobs), "Drawing images", total=images))
    return dict(zip(("objects", "crowd (score 0)", "ignored regions", "others (cat 11)"), map(int, counts)))
