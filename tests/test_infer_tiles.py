"""Tiles: lazy crops, true batches, exact shift back to image coordinates, through the one
path `afm infer` and the Python API run (afmcli.inference.predict)."""

import cv2
import numpy as np
import pytest

from afmcli.data.slicing import slice_windows
from afmcli.detections import Detections
from afmcli.inference.predict import PredictSettings, image_units, predict_units
from afmcli.inference.tiles import batched, iter_crops, plan_windows, window_to_image


class BlobDetector:
    """A model that finds white rectangles in each crop (one batch per forward); records
    batch sizes. Its pipeline hands the crops over as they are."""

    pipeline = staticmethod(list)
    nms_device = "cpu"  # where predict_units fuses (the backends' contract)

    def __init__(self):
        self.batches = []

    def forward(self, crops, score_thr=0.0):
        self.batches.append(len(crops))
        out = []
        for crop in crops:
            n, _, stats, _ = cv2.connectedComponentsWithStats((crop[..., 0] == 255).astype(np.uint8))
            boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:]]
            out.append(Detections(np.array(boxes, float).reshape(-1, 4), np.full(n - 1, 0.9),
                                  np.zeros(n - 1, int)))
        return out


def test_iter_crops_are_lazy_views_in_window_order():
    image = np.arange(6 * 8 * 3).reshape(6, 8, 3)
    windows = np.array([[0, 0, 4, 4], [4, 2, 8, 6]])
    crops = iter_crops(image, windows)
    first = next(crops)
    assert np.shares_memory(first, image) and first.shape == (4, 4, 3)
    np.testing.assert_array_equal(next(crops), image[2:6, 4:8])


def test_batched():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        next(batched([1], 0))


def test_window_to_image_shifts_exactly_and_clips_to_the_tile():
    dets = Detections([[1.25, 2.5, 10.125, 20.0], [-3, 5, 4, 9], [60, 60, 70, 70], [30, 5, 50, 9]],
                      [0.9, 0.8, 0.7, 0.6], [0, 1, 2, 3])
    out = window_to_image(dets, (480, 960, 520, 1000))  # a 40 x 40 tile
    np.testing.assert_array_equal(out.boxes, [[481.25, 962.5, 490.125, 980.0], [480, 965, 484, 969],
                                              [510, 965, 520, 969]])
    np.testing.assert_array_equal(out.scores, [0.9, 0.8, 0.6])  # the box outside the tile is gone
    np.testing.assert_array_equal(out.labels, [0, 1, 3])


def blobs_image(height, width, rects):
    img = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in rects:
        img[y1:y2, x1:x2] = 255
    return img


def predict(det: BlobDetector, image: np.ndarray, **settings):
    """The image's result (labels: category 1), its units in order."""
    s = PredictSettings(**settings)
    ((_, result, _),) = predict_units(det, image_units(1, image, det.pipeline, s), [1], s)
    return result


def test_an_image_finds_every_object_at_its_image_position_in_true_batches():
    rects = [[10, 10, 30, 22], [300, 170, 320, 190], [470, 350, 500, 380], [120, 200, 135, 212]]
    image = blobs_image(400, 500, rects)
    det = BlobDetector()
    # Pieces cut by tile edges lie inside the whole box (IoS 1): greedy NMM with IoS
    # merges them back, and exactly the objects remain.
    result = predict(det, image, slice_size=128, overlap=0.25, batch_size=4, method="greedy-nmm", iou=0.5,
                     match="ios")
    assert result.n_tiles == len(slice_windows(400, 500, 128, 128, 0.25, 0.25)) == 20
    assert det.batches == [4, 4, 4, 4, 4, 1]  # tiles in batches of 4, then the full image
    full = result.full
    np.testing.assert_array_equal(full.boxes[np.lexsort(full.boxes.T[::-1])], sorted(rects))
    assert sorted(map(tuple, result.fused.boxes.astype(int).tolist())) == sorted(map(tuple, rects))
    assert set(result.fused.labels) == {1}


def test_an_object_cut_by_tile_edges_is_clipped_pieces_that_cover_it():
    rect = [90, 90, 110, 110]  # across the boundary of the first tile (0..100)
    image = blobs_image(200, 200, [rect])
    slices = predict(BlobDetector(), image, slice_size=100, overlap=0.0, full=False).slices
    assert slices.boxes.min(axis=0)[:2].tolist() == [90, 90] and slices.boxes.max(axis=0)[2:].tolist() == [110, 110]
    assert all(np.all(b[:2] >= 90) and np.all(b[2:] <= 110) for b in slices.boxes)


def test_one_tile_covering_the_image_is_not_run_twice():
    image = blobs_image(100, 120, [[5, 5, 15, 15]])
    det = BlobDetector()
    r = predict(det, image)
    assert (r.n_tiles, len(r.slices), len(r.full), det.batches) == (0, 0, 1, [1])
    r = predict(det, image, full=False)
    assert (r.n_tiles, len(r.slices), len(r.full)) == (1, 1, 0)


@pytest.mark.parametrize("height, width, size, overlap", [(765, 1360, 640, 0.25), (300, 1000, 640, 0.2),
                                                           (1500, 2000, 512, 0.0), (100, 100, 640, 0.25)])
def test_an_images_tiles_have_one_size(height, width, size, overlap):
    """A batch never mixes sizes: padding would move the scores (GroupNorm in TOOD's head)."""
    windows = plan_windows(height, width, size, overlap, full=False)
    sizes = {(int(x2 - x1), int(y2 - y1)) for x1, y1, x2, y2 in windows}
    assert sizes == {(min(size, width), min(size, height))}
    assert windows[:, 2].max() == width and windows[:, 3].max() == height
