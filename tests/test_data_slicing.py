"""Tile placement (SAHI's) and box bookkeeping for crops."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afmcli.data.slicing import boxes_in_window, clip_boxes_xyxy, slice_windows
from afmcli.errors import AfmError


def test_hand_case_last_column_flush_with_edge():
    """1400 wide, 640 tiles, overlap int(0.25*640)=160: starts 0, 480, then 960 would end at
    1600 > 1400 so it moves to 1400-640=760. 1050 high: 0, 480 -> 1120 > 1050 -> 410."""
    windows = slice_windows(1050, 1400, 640, 640, 0.25, 0.25)
    assert windows.tolist() == [
        [0, 0, 640, 640], [480, 0, 1120, 640], [760, 0, 1400, 640],
        [0, 410, 640, 1050], [480, 410, 1120, 1050], [760, 410, 1400, 1050]]
    assert windows.dtype == np.int64


def test_image_smaller_than_tile_gives_one_tile():
    assert slice_windows(300, 500, 640, 640, 0.2, 0.2).tolist() == [[0, 0, 500, 300]]


def test_exact_fit_gives_no_extra_tile():
    assert slice_windows(640, 1280, 640, 640, 0.0, 0.0).tolist() == [[0, 0, 640, 640], [640, 0, 1280, 640]]


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000), sh=st.integers(64, 1024), sw=st.integers(64, 1024),
       oh=st.floats(0, 0.9), ow=st.floats(0, 0.9))
def test_same_tiles_as_sahi(h, w, sh, sw, oh, ow):
    from sahi.slicing import get_slice_bboxes

    expected = get_slice_bboxes(h, w, sh, sw, auto_slice_resolution=False,
                                overlap_height_ratio=oh, overlap_width_ratio=ow)
    assert slice_windows(h, w, sh, sw, oh, ow).tolist() == expected


@pytest.mark.parametrize("args", [(100, 100, 0, 64, 0.2, 0.2), (100, 100, 64, 64, 1.0, 0.2),
                                  (100, 100, 64, 64, 0.2, -0.1)])
def test_bad_arguments_are_user_errors(args):
    with pytest.raises(AfmError):
        slice_windows(*args)


def test_clip_boxes():
    out = clip_boxes_xyxy([[-5, 10, 50, 700]], (0, 0, 640, 640))
    assert out.tolist() == [[0, 10, 50, 640]]


def test_boxes_in_window_keeps_visible_fraction_and_shifts():
    """Window x 100..200. Box A 90..110 (half visible: kept at 0.5), box B 190..230
    (10 of 40 visible: dropped), box C inside, box D outside, box E empty."""
    boxes = np.array([[90, 0, 110, 10], [190, 0, 230, 10], [120, 5, 130, 15], [300, 0, 310, 10],
                      [150, 5, 150, 15]], float)
    index, shifted = boxes_in_window(boxes, (100, 0, 200, 100), 0.5)
    assert index.tolist() == [0, 2]
    assert shifted.tolist() == [[0, 0, 10, 10], [20, 5, 30, 15]]
    index, _ = boxes_in_window(boxes, (100, 0, 200, 100), 0.0)
    assert index.tolist() == [0, 1, 2]  # any visible area, but never an empty box
