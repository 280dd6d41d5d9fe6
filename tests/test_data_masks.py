"""Mask rendering (one function for files, transforms and the model) and the mmdet transforms."""

import math

import cv2
import numpy as np
import pytest
import torch

from afmcli.data.masks import (cell_offset, draw_ellipses, render_object_masks, render_object_masks_torch,
                               sample_cell_centres, shape_radius)
from afmcli.errors import AfmError


def _brute_force(boxes, shape, stride, radius):
    """Every cell tested on its own: its point inside the scaled inscribed ellipse."""
    mask = np.zeros(shape, np.uint8)
    off = 0.5 if stride == 1 else 0.0  # written out, not cell_offset: the rule under test
    for i in range(shape[0]):
        for j in range(shape[1]):
            x, y = (j + off) * stride, (i + off) * stride
            for x1, y1, x2, y2 in boxes:
                a, b = radius * (x2 - x1) / 2, radius * (y2 - y1) / 2
                if a > 0 and b > 0 and ((x - (x1 + x2) / 2) / a) ** 2 + ((y - (y1 + y2) / 2) / b) ** 2 <= 1:
                    mask[i, j] = 1
    return mask


def test_oval_hand_case_stride_1():
    """Box 0..6: centre 3, semi-axes 3. Pixel-centre offsets 2.5, 1.5, 0.5 -> (d/3)^2 = 0.694,
    0.25, 0.028. Only the four corners (0.694 + 0.694 > 1) are outside."""
    mask_s, mask_l = render_object_masks([[0, 0, 6, 6]], [36], (6, 6))
    expected = np.ones((6, 6), np.uint8)
    expected[[0, 0, 5, 5], [0, 5, 0, 5]] = 0
    np.testing.assert_array_equal(mask_s, expected)
    assert mask_l.sum() == 0 and mask_s.dtype == np.uint8


def test_stride_8_reads_cells_where_the_priors_sit():
    """Stride 8: cell j is read at 8j (0, 8, 16), mmdet's prior points; stride 1 at pixel
    centres. Box 6..10 (centre 8, semi-axis 2) holds only the point of cell (1, 1); at cell
    centres (4, 12) it would hold none. Box 0..16 (centre 8, semi-axis 8) holds the points at
    distance 0 and 8 along one axis: a plus of five cells."""
    assert (cell_offset(8), cell_offset(1)) == (0.0, 0.5)
    mask_s, _ = render_object_masks([[6, 6, 10, 10]], [16], (3, 3), stride=8, keep_centre=False)
    assert np.argwhere(mask_s).tolist() == [[1, 1]]
    mask_s, _ = render_object_masks([[0, 0, 16, 16]], [256], (3, 3), stride=8)
    assert np.argwhere(mask_s).tolist() == [[0, 1], [1, 0], [1, 1], [1, 2], [2, 1]]


def test_tiny_box_keeps_its_centre_cell():
    """Box 1..3 at stride 8: its ellipse (radius 1 around 2) misses the cell centre 4, but the
    cell that holds the box centre stays on unless keep_centre=False."""
    mask_s, _ = render_object_masks([[1, 1, 3, 3]], [4], (2, 2), stride=8)
    assert mask_s.tolist() == [[1, 0], [0, 0]]
    mask_s, _ = render_object_masks([[1, 1, 3, 3]], [4], (2, 2), stride=8, keep_centre=False)
    assert mask_s.sum() == 0


def test_small_large_split_uses_given_original_area():
    """Area 1023 < 1024 is small; 1024 is large (COCO's strict 'area < 32*32')."""
    boxes = [[0, 0, 8, 8], [16, 16, 24, 24]]
    mask_s, mask_l = render_object_masks(boxes, [1023, 1024], (32, 32))
    assert mask_s[4, 4] == 1 and mask_s[20, 20] == 0
    assert mask_l[20, 20] == 1 and mask_l[4, 4] == 0


def test_gaussian_radius_and_equivalence():
    """sigma = w/6: the Gaussian at the box edge is exp(-4.5), so threshold exp(-4.5) is the oval;
    threshold 0.1 gives radius sqrt(2 ln 10)/3 = 0.71532."""
    assert shape_radius("oval") == 1.0
    assert shape_radius("gaussian", math.exp(-4.5)) == pytest.approx(1.0)
    assert shape_radius("gaussian", 0.1) == pytest.approx(0.71532, abs=1e-5)
    boxes = [[3.2, 4.7, 40.1, 30.3]]
    oval = render_object_masks(boxes, [1], (48, 48), kind="oval")[0]
    same = render_object_masks(boxes, [1], (48, 48), kind="gaussian", threshold=math.exp(-4.5) * (1 - 1e-9))[0]
    np.testing.assert_array_equal(oval, same)
    gauss = render_object_masks(boxes, [1], (48, 48), kind="gaussian", threshold=0.1)[0]
    assert 0 < gauss.sum() < oval.sum() and np.all(oval >= gauss)


@pytest.mark.parametrize("kind,threshold", [("square", 0.1), ("gaussian", 1.5)])
def test_bad_kind_or_threshold(kind, threshold):
    with pytest.raises(AfmError):
        render_object_masks([[0, 0, 4, 4]], [16], (4, 4), kind=kind, threshold=threshold)


@pytest.mark.parametrize("stride", [1, 4, 8, 16])
def test_equals_per_cell_reference_on_random_boxes(stride):
    rng = np.random.default_rng(stride)
    xy = rng.uniform(-20, 150, (25, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (25, 2))], axis=1)
    shape = (math.ceil(120 / stride), math.ceil(160 / stride))
    got = draw_ellipses(np.zeros(shape, np.uint8), boxes, stride, radius=0.8, keep_centre=False)
    np.testing.assert_array_equal(got, _brute_force(boxes, shape, stride, 0.8))


def test_torch_wrapper_matches_numpy():
    boxes = torch.tensor([[2.0, 3.0, 30.0, 20.0], [40.0, 40.0, 90.0, 100.0]])
    areas = torch.tensor([100.0, 5000.0])
    ts, tl = render_object_masks_torch(boxes, areas, (13, 12), stride=8)
    ns, nl = render_object_masks(boxes.numpy(), areas.numpy(), (13, 12), stride=8)
    assert ts.dtype == torch.float32 and ts.shape == (13, 12)
    np.testing.assert_array_equal(ts.numpy(), ns)
    np.testing.assert_array_equal(tl.numpy(), nl)


def test_sample_cell_centres_votes_around_the_cell_point():
    """img 20x30, stride 8 -> 3x4 cells. Cell (1, 1) is read at (8, 8), the corner of pixels
    (7..8, 7..8): 3 of 4 on -> on; cell (2, 3) at (24, 16): 2 of 4 -> off. Cell (0, 0) at
    (0, 0): pixels -1 clip to 0, so pixel (0, 0) alone decides."""
    full = np.zeros((20, 30), np.uint8)
    full[7, 7] = full[7, 8] = full[8, 7] = 1
    full[15, 23] = full[16, 24] = 1
    full[0, 0] = 1
    out = sample_cell_centres(full, (20, 30), 8)
    assert out.shape == (3, 4)
    assert np.argwhere(out).tolist() == [[0, 0], [1, 1]]
    full[15, 24] = 1
    assert sample_cell_centres(full, (20, 30), 8)[2, 3] == 1
    odd = np.zeros((9, 9), np.uint8)
    odd[0, 2] = odd[0, 3] = 1  # stride 3: cell (0, 1) is read at (3, 0): pixels (0, 2..3), each twice
    assert np.argwhere(sample_cell_centres(odd, (9, 9), 3)).tolist() == [[0, 1]]
    ones = np.eye(5, dtype=np.uint8)  # stride 1: the pixel itself
    np.testing.assert_array_equal(sample_cell_centres(ones, (5, 5), 1), ones)


# --- mmdet transforms ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mmdet_scope():
    from mmdet.utils import register_all_modules

    import afmcli.data.transforms  # noqa: F401  (registers the transforms)

    register_all_modules(init_default_scope=True)


def _dataset(split, pipeline):
    from mmdet.datasets import CocoDataset

    from afmcli.data.visdrone_format import CLASSES

    return CocoDataset(data_root=str(split.root), ann_file=str(split.ann_file), metainfo=dict(classes=CLASSES),
                       data_prefix=dict(img="images/train/"), pipeline=pipeline, test_mode=False)


def test_render_transform_hand_case(mmdet_scope):
    """Image resized x2 to 100x200: the 40x40 box had area 400 originally -> small (stride 8);
    the 80x80 box had 1600 -> large (stride 16); the crowd box is not drawn."""
    from mmdet.structures.bbox import HorizontalBoxes

    from afmcli.data.transforms import RenderObjectMasks

    results = dict(img_shape=(100, 200), scale_factor=(2.0, 2.0),
                   gt_bboxes=HorizontalBoxes(torch.tensor([[0.0, 0, 40, 40], [100, 0, 180, 80], [160, 60, 200, 100]])),
                   gt_ignore_flags=np.array([False, False, True]))
    out = RenderObjectMasks(strides=(8, 16))(results)
    assert out["gt_mask_s"].shape == (13, 25) and out["gt_mask_l"].shape == (7, 13)
    assert out["gt_mask_s"][2, 2] == 1 and out["gt_mask_s"][:, 12:].sum() == 0
    assert out["gt_mask_l"][2, 8] == 1 and out["gt_mask_l"][:2, :6].sum() == 0
    assert out["gt_mask_l"][5, 11] == 0  # crowd box centre (180, 80)


def test_file_masks_and_rendered_masks_agree_after_resize_flip(synth_split, mmdet_scope):
    geometric = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]
    resize_flip = [dict(type="Resize", scale=(1333, 800), keep_ratio=True), dict(type="RandomFlip", prob=1.0)]
    from_files = _dataset(synth_split, geometric + [
        dict(type="LoadObjectMasks", mask_root_s=str(synth_split.root / "labels/gt_mask_s/train"),
             mask_root_l=str(synth_split.root / "labels/gt_mask_l/train"))] + resize_flip + [
        dict(type="Pad", size_divisor=32), dict(type="DownsampleObjectMasks", strides=(8, 16)),
        dict(type="PackAFMInputs")])
    rendered = _dataset(synth_split, geometric + resize_flip + [
        dict(type="Pad", size_divisor=32), dict(type="RenderObjectMasks", strides=(8, 16)),
        dict(type="PackAFMInputs")])
    inter, union = {}, {}
    for k in range(4):
        a, b = from_files[k]["data_samples"], rendered[k]["data_samples"]
        h, w = a.img_shape
        for key, stride in (("gt_mask_s", 8), ("gt_mask_l", 16)):
            ma, mb = a.get(key).data, b.get(key).data
            assert ma.shape == mb.shape == (1, math.ceil(h / stride), math.ceil(w / stride))
            assert ma.dtype == torch.float32 and set(ma.unique().tolist()) <= {0.0, 1.0}
            inter[key] = inter.get(key, 0) + int(((ma > 0) & (mb > 0)).sum())
            union[key] = union.get(key, 0) + int(((ma > 0) | (mb > 0)).sum())
        assert "gt_sem_seg" not in a  # the carrier key is consumed
    for key in inter:  # pooled over the images; each map has objects in some of them
        assert union[key] > 0 and inter[key] / union[key] >= 0.9, (key, inter[key] / union[key])


def test_load_object_masks_missing_file(tmp_path, mmdet_scope):
    from afmcli.data.transforms import LoadObjectMasks

    t = LoadObjectMasks(mask_root_s=str(tmp_path), mask_root_l=str(tmp_path))
    with pytest.raises(AfmError, match=r"abc\.png: missing or unreadable mask file"):
        t(dict(img_path="/x/abc.jpg", img_shape=(10, 10)))


def test_make_masks_files(synth_split):
    """Files are 0/255 uint8 at image resolution; crowd boxes are not drawn."""
    from afmcli.io import read_json

    coco = read_json(synth_split.ann_file)
    img = coco["images"][0]
    stem = img["file_name"].rsplit(".", 1)[0]
    ms = cv2.imread(str(synth_split.root / f"labels/gt_mask_s/train/{stem}.png"), cv2.IMREAD_UNCHANGED)
    ml = cv2.imread(str(synth_split.root / f"labels/gt_mask_l/train/{stem}.png"), cv2.IMREAD_UNCHANGED)
    assert ms.shape == ml.shape == (img["height"], img["width"]) and ms.dtype == np.uint8
    assert set(np.unique(ms)) | set(np.unique(ml)) <= {0, 255}
    for ann in coco["annotations"]:
        if ann["image_id"] != img["id"]:
            continue
        x, y, w, h = ann["bbox"]
        cx, cy = int(x + w / 2), int(y + h / 2)
        if ann["iscrowd"]:
            continue
        assert (ms if w * h < 1024 else ml)[cy, cx] == 255


def test_make_masks_cli_errors(tmp_path, capsys):
    from afmcli.cli import main

    for argv, message in ((["--kind", "square"], "unknown mask kind 'square'"),
                          ([], "train_labels.json: no such file")):
        with pytest.raises(SystemExit) as exc:
            main(["make-masks", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "labels").exists()
