"""Drawing: boxes above the score threshold, labels on a filled box, a legend strip,
ten distinct class colours, TP/FP/FN in three colours, JPEG for large images."""

import itertools

import cv2
import numpy as np
import pytest

from afmcli.detections import Detections
from afmcli.viz.draw import (ERROR_COLORS, JPEG_ABOVE_PIXELS, class_color, draw_detections, draw_errors,
                             hex_to_bgr, IGNORED_HEX, text_height, write_image)

CAR = 4


def _count(image: np.ndarray, color) -> int:
    return int((image == np.asarray(color, np.uint8)).all(axis=2).sum())


def test_draws_boxes_above_the_score_threshold_on_a_copy_with_a_legend():
    image = np.zeros((120, 200, 3), np.uint8)
    dets = Detections([[10, 40, 30, 60], [140, 40, 170, 70]], [0.9, 0.1], [CAR, 9])
    out = draw_detections(image, dets, {CAR: "car", 9: "bus"}, score_thr=0.3)
    assert image.max() == 0  # the input is untouched
    assert tuple(out[50, 10]) == class_color(CAR) and tuple(out[40, 20]) == class_color(CAR)  # left, top edges
    assert out[45:55, 15:25].max() == 0  # inside stays clear
    assert out[30:120, 135:175].max() == 0  # the 0.1 box is not drawn
    # The label "car 0.90" sits on a filled box of the class colour just above the box.
    assert _count(out[25:40, 10:80], class_color(CAR)) > 200
    # The legend is a white strip below the image with a swatch of each class drawn, only those.
    assert out.shape[0] > image.shape[0] and out.shape[1] == image.shape[1]
    strip = out[image.shape[0]:]
    assert (strip == 255).mean() > 0.6
    assert _count(strip, class_color(CAR)) >= text_height(image.shape) ** 2 - 4 * text_height(image.shape)
    assert _count(strip, class_color(9)) == 0


def test_ten_class_colours_are_clearly_distinct():
    """Pairwise distance in CIE Lab (cv2's 8-bit scale) above 35 (the old golden-ratio hues: 28.7); people, tricycle and
    motor (2, 7, 10), once three yellow-greens, are among them."""
    lab = {c: cv2.cvtColor(np.uint8([[class_color(c)]]), cv2.COLOR_BGR2LAB)[0, 0].astype(float)
           for c in range(1, 11)}
    distances = {(a, b): np.linalg.norm(lab[a] - lab[b]) for a, b in itertools.combinations(lab, 2)}
    assert min(distances.values()) > 35, min(distances.items(), key=lambda kv: kv[1])
    assert len({class_color(c) for c in range(1, 11)}) == 10


def test_label_size_follows_the_image():
    assert text_height((480, 640)) == 10  # the floor
    assert text_height((1080, 1920)) == 19
    assert text_height((4000, 6000)) == 60


def test_errors_in_three_colours_with_counts_in_the_legend():
    image = np.full((100, 160, 3), 40, np.uint8)
    tp = np.array([[10, 10, 30, 30, 0.9, CAR]])
    fp = np.array([[60, 10, 80, 30, 0.8, CAR], [100, 10, 120, 30, 0.7, 1]])
    fn = np.array([[10, 60, 30, 80, 9]])
    ignored = np.array([[120, 60, 160, 100]])
    out = draw_errors(image, tp, fp, fn, ignored, {CAR: "car", 9: "bus", 1: "pedestrian"})
    for kind, box in (("TP", tp[0]), ("FP", fp[0]), ("FN", fn[0])):
        x1, y1 = int(box[0]), int(box[1])
        assert tuple(out[y1 + 5, x1]) == ERROR_COLORS[kind], kind  # the left edge
    assert len({*ERROR_COLORS.values()}) == 3
    shaded = out[80, 140].astype(int)  # 0.6 grey + 0.4 background
    assert np.abs(shaded - (0.6 * np.array(hex_to_bgr(IGNORED_HEX)) + 0.4 * 40)).max() <= 1
    strip = out[image.shape[0]:]
    for color in (*ERROR_COLORS.values(), hex_to_bgr(IGNORED_HEX)):
        assert _count(strip, color) > 50


@pytest.mark.parametrize("shape, suffix", [((400, 600, 3), ".png"), ((800, 1000, 3), ".jpg")])
def test_large_images_are_written_as_jpeg(tmp_path, shape, suffix):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    assert (shape[0] * shape[1] > JPEG_ABOVE_PIXELS) == (suffix == ".jpg")
    path = write_image(tmp_path / "x", image)
    assert path == tmp_path / f"x{suffix}"
    assert cv2.imread(str(path)).shape == shape
