"""Boxes drawn on images for `afm infer --viz`."""

import numpy as np

from afmcli.inference.detections import Detections
from afmcli.viz.draw import class_color, draw_detections


def test_draws_boxes_above_the_score_threshold_on_a_copy():
    image = np.zeros((60, 80, 3), np.uint8)
    dets = Detections([[10, 20, 30, 40], [50, 5, 70, 25]], [0.9, 0.1], [4, 4])
    out = draw_detections(image, dets, {4: "car"}, score_thr=0.3)
    assert image.max() == 0  # the input is untouched
    assert tuple(out[30, 10]) == class_color(4) and tuple(out[20, 20]) == class_color(4)  # left and top edges
    assert out[35:40, 15:25].max() == 0  # inside stays clear
    assert out[5:26, 50:71].max() == 0  # the 0.1 box is not drawn


def test_class_colours_differ():
    assert len({class_color(i) for i in range(10)}) == 10
