"""Boxes drawn on images (opencv), readable at any image size.

Class colours are matplotlib's "tab10" (Tableau 10), ten colours chosen to be
told apart, in VisDrone's class order; TP / FP / FN use three colours of the
Okabe-Ito palette (distinct for colour-blind readers too). Labels are sized to
the image and sit on a filled box of the colour; a legend strip is added below
the image so that it covers nothing. Images above half a megapixel are written
as JPEG (a 6000x4000 drawing is 44 MB as PNG, a 960x540 photo 0.9 MB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from afmcli.data.images import save_image
from afmcli.detections import Detections

TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
ERROR_HEX = {"TP": "#009e73", "FP": "#d55e00", "FN": "#f0e442"}
IGNORED_HEX = "#bbbbbb"
FONT = cv2.FONT_HERSHEY_SIMPLEX
JPEG_ABOVE_PIXELS = 500_000
JPEG_QUALITY = 90


def hex_to_bgr(color: str) -> tuple[int, int, int]:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def class_color(label: int) -> tuple[int, int, int]:
    """BGR colour of a category id: VisDrone's ids 1..10 get tab10's ten colours in order."""
    return hex_to_bgr(TAB10[(int(label) - 1) % len(TAB10)])


ERROR_COLORS = {kind: hex_to_bgr(c) for kind, c in ERROR_HEX.items()}


def text_height(shape: Sequence[int]) -> int:
    """Label text height in pixels: 1 % of the longer side, at least 10 px, so
    labels keep their size relative to the image when it is viewed scaled."""
    return max(10, round(0.01 * max(shape[:2])))


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _font(height: int) -> tuple[float, int]:
    thickness = max(1, round(height / 12))
    return cv2.getFontScaleFromHeight(FONT, height, thickness), thickness


def put_label(image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], height: int) -> None:
    """``text`` on a filled box of ``color`` whose bottom-left is (x, y), kept inside the image."""
    scale, thickness = _font(height)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(1, height // 5)
    w, h = tw + 2 * pad, th + base + 2 * pad
    x0 = int(min(max(x, 0), max(image.shape[1] - w, 0)))
    y0 = int(y - h if y - h >= 0 else min(max(y, 0), max(image.shape[0] - h, 0)))
    cv2.rectangle(image, (x0, y0), (x0 + w - 1, y0 + h - 1), color, -1)
    cv2.putText(image, text, (x0 + pad, y0 + pad + th), FONT, scale, _text_color(color), thickness, cv2.LINE_AA)


def legend_strip(width: int, items: Iterable[tuple[str, tuple[int, int, int]]], height: int) -> np.ndarray:
    """White rows holding a colour swatch and name per item, wrapped to ``width``."""
    scale, thickness = _font(height)
    pad = max(2, height // 2)
    placed, x, row = [], pad, 0
    for text, color in items:
        tw = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
        item_w = height + pad // 2 + tw
        if x > pad and x + item_w > width - pad:
            x, row = pad, row + 1
        placed.append((x, row, text, color))
        x += item_w + 2 * pad
    line = height + pad
    strip = np.full((pad + (row + 1) * line, width, 3), 255, np.uint8)
    for x, r, text, color in placed:
        top = pad + r * line
        cv2.rectangle(strip, (x, top), (x + height - 1, top + height - 1), color, -1)
        cv2.rectangle(strip, (x, top), (x + height - 1, top + height - 1), (60, 60, 60), 1)
        cv2.putText(strip, text, (x + height + pad // 2, top + height - 1), FONT, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return strip


def with_legend(image: np.ndarray, items: Iterable[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    return np.vstack([image, legend_strip(image.shape[1], items, text_height(image.shape))])


def _draw_boxes(image: np.ndarray, boxes: np.ndarray, colors: Sequence, labels: Sequence[str | None]) -> None:
    height = text_height(image.shape)
    thickness = max(2, round(height / 6))
    for box, color, label in zip(boxes, colors, labels):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
    # Labels after all boxes, so that no box line crosses a label.
    for box, color, label in zip(boxes, colors, labels):
        if label:
            put_label(image, label, int(round(box[0])), int(round(box[1])), color, height)


def draw_detections(image: np.ndarray, dets: Detections, names: Mapping[int, str] | None = None,
                    score_thr: float = 0.3) -> np.ndarray:
    """A copy of a BGR ``image`` with the boxes scoring >= ``score_thr``, labelled
    ``name score`` (lowest scores drawn first so the best stay on top), and a
    legend of the classes drawn below it."""
    out = np.ascontiguousarray(image).copy()
    keep = dets.scores >= score_thr
    order = np.argsort(dets.scores[keep], kind="stable")
    labels = dets.labels[keep][order].astype(int)
    names = names or {}
    _draw_boxes(out, dets.boxes[keep][order], [class_color(c) for c in labels],
                [f"{names.get(c, c)} {s:.2f}" for c, s in zip(labels, dets.scores[keep][order])])
    return with_legend(out, [(str(names.get(c, c)), class_color(c)) for c in sorted(set(labels.tolist()))])


def draw_errors(image: np.ndarray, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, ignored: np.ndarray,
                names: Mapping[int, str]) -> np.ndarray:
    """A copy of ``image`` with ignored regions shaded grey, then false positives
    (``name score``), true positives and missed objects (``name``) in three colours,
    and a legend with their counts.

    tp, fp: (N, 6) detections x1, y1, x2, y2, score, category; fn: (N, 5) ground
    truth x1, y1, x2, y2, category; ignored: (N, 4) boxes.
    """
    out = np.ascontiguousarray(image).copy()
    shade = out.copy()
    for x1, y1, x2, y2 in np.round(ignored).astype(int):
        cv2.rectangle(shade, (x1, y1), (x2, y2), hex_to_bgr(IGNORED_HEX), -1)
    out = cv2.addWeighted(shade, 0.6, out, 0.4, 0)
    # False positives first: they often surround a hit or a miss, which must stay visible.
    _draw_boxes(out, fp[:, :4], [ERROR_COLORS["FP"]] * len(fp),
                [f"{names.get(int(c), str(int(c)))} {s:.2f}" for s, c in fp[:, 4:6]])
    _draw_boxes(out, tp[:, :4], [ERROR_COLORS["TP"]] * len(tp), [None] * len(tp))
    _draw_boxes(out, fn[:, :4], [ERROR_COLORS["FN"]] * len(fn), [names.get(int(c), str(int(c))) for c in fn[:, 4]])
    items = [(f"TP {len(tp)}", ERROR_COLORS["TP"]), (f"FP {len(fp)}", ERROR_COLORS["FP"]),
             (f"FN (missed) {len(fn)}", ERROR_COLORS["FN"])]
    if len(ignored):
        items.append(("ignored", hex_to_bgr(IGNORED_HEX)))
    return with_legend(out, items)


def image_suffix(image: np.ndarray) -> str:
    return ".jpg" if image.shape[0] * image.shape[1] > JPEG_ABOVE_PIXELS else ".png"


def write_image(stem_path: Path, image: np.ndarray) -> Path:
    """Write ``image`` as ``stem_path`` + .png, or .jpg when large; returns the path."""
    path = Path(f"{stem_path}{image_suffix(image)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    save_image(path, image, params)
    return path
