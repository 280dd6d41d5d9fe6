"""YOLO: `afm convert-visdrone --to-yolo` (a round trip on real VisDrone train images,
ignored regions painted out, others dropped) and `afm infer --yolo` results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from afmcli.cli import main
from afmcli.data.visdrone_format import CLASSES, read_visdrone_file
from afmcli.data.yolo import COVERED, PAINT, covered_fraction, painted_mask, yolo_lines

SHARED = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REAL = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train"
# Nine ignored regions and an "others" box; none; 21 ignored regions.
STEMS = ("0000002_00448_d_0000015", "0000071_00007_d_0000001", "0000047_03500_d_0000095")


def read_yolo(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(classes, xyxy boxes in pixels, confidences or None) of a YOLO txt file."""
    rows = np.loadtxt(path, ndmin=2) if path.stat().st_size else np.zeros((0, 5))
    w, h = size
    xc, yc, bw, bh = (rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h)
    boxes = np.c_[xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2]
    return rows[:, 0].astype(int), boxes, rows[:, 5] if rows.shape[1] == 6 else None


def test_yolo_lines_normalise_by_the_image_size():
    text = yolo_lines([3, 0], [[10, 20, 30, 60], [0, 0, 200, 100]], (200, 100), [0.5, 0.25])
    assert text == "3 0.100000 0.400000 0.100000 0.400000 0.500000\n0 0.500000 0.500000 1.000000 1.000000 0.250000\n"
    assert yolo_lines([], np.zeros((0, 4)), (5, 5)) == ""


def test_covered_fraction_counts_painted_pixels():
    mask = painted_mask([[0, 0, 10, 10], [2.5, 20, 1, 1]], 40, 30)  # the second covers pixels 2..3, row 20
    assert mask.sum() == 100 + 2 and mask[20, 2:4].all()
    np.testing.assert_allclose(covered_fraction([[5, 5, 10, 10], [20, 20, 4, 4], [0, 0, 10, 10]], mask),
                               [0.25, 0.0, 1.0])


@pytest.fixture(scope="module")
def real_split(tmp_path_factory):
    if not (REAL / "images").is_dir():
        pytest.skip(f"real VisDrone images not found at {REAL} (set AFM_SHARED)")
    src = tmp_path_factory.mktemp("yolo") / "VisDrone2019-DET-train"
    for sub, suffix in (("images", ".jpg"), ("annotations", ".txt")):
        (src / sub).mkdir(parents=True)
        for stem in STEMS:
            (src / sub / f"{stem}{suffix}").symlink_to(REAL / sub / f"{stem}{suffix}")
    return src


def test_visdrone_to_yolo_round_trip_on_real_images(real_split, tmp_path, capsys):
    out = tmp_path / "yolo"
    main(["convert-visdrone", str(real_split), str(out), "--to-yolo", "--split", "train", "--workers", "1"])
    table = capsys.readouterr().out
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"train": "images/train", "names": dict(enumerate(CLASSES))}
    others = regions = 0
    for stem in STEMS:
        rows = read_visdrone_file(REAL / "annotations" / f"{stem}.txt")
        original = cv2.imread(str(REAL / "images" / f"{stem}.jpg"))
        height, width = original.shape[:2]
        painted = cv2.imread(str(out / "images" / "train" / f"{stem}.jpg"))
        ignored = rows[rows[:, 4] == 0]  # ignored regions (category 0) and everything else of score 0
        mask = painted_mask(ignored[:, :4], width, height)
        regions += int((rows[:, 5] == 0).sum())
        others += int((rows[:, 5] == 11).sum())
        # What the labels must be: the scored objects of classes 1..10, clipped to the image, 0-based,
        # less those mostly under painted pixels.
        objects = rows[(rows[:, 4] == 1) & (rows[:, 5] >= 1) & (rows[:, 5] <= 10)]
        kept = objects[covered_fraction(objects[:, :4], mask) < COVERED]
        expected = np.c_[np.clip(kept[:, 0], 0, width), np.clip(kept[:, 1], 0, height),
                         np.clip(kept[:, 0] + kept[:, 2], 0, width), np.clip(kept[:, 1] + kept[:, 3], 0, height)]
        classes, boxes, scores = read_yolo(out / "labels" / "train" / f"{stem}.txt", (width, height))
        assert scores is None and classes.tolist() == (kept[:, 5] - 1).astype(int).tolist()
        np.testing.assert_allclose(boxes, expected, atol=2e-3)  # 6 decimals of a 2000-pixel side
        if not len(ignored):  # nothing to paint: the file itself, not a re-encoded copy
            assert (out / "images" / "train" / f"{stem}.jpg").read_bytes() == \
                (REAL / "images" / f"{stem}.jpg").read_bytes()
            continue
        # Painted grey inside the ignored pixels (JPEG-coded: within a few levels, away from the
        # edges), the image elsewhere.
        inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert inner.sum() > 1000
        assert np.abs(painted[inner].astype(int) - PAINT).mean() < 2
        assert np.abs(original[inner].astype(int) - PAINT).mean() > 20  # it was not grey before
        outside = ~cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert np.abs(painted[outside].astype(int) - original[outside]).mean() < 2
    assert others == 1 and regions == 30
    assert "others (cat 11) dropped" in table and " 1 " in table.split("others (cat 11) dropped")[1].splitlines()[0]


def test_keep_ignored_leaves_the_pixels_and_a_second_split_joins_the_yaml(real_split, tmp_path):
    out = tmp_path / "yolo"
    main(["convert-visdrone", str(real_split), str(out), "--to-yolo", "--split", "val", "--keep-ignored"])
    for stem in STEMS:
        assert (out / "images" / "val" / f"{stem}.jpg").read_bytes() == (REAL / "images" / f"{stem}.jpg").read_bytes()
    main(["convert-visdrone", str(real_split), str(out), "--to-yolo", "--split", "train", "--keep-ignored"])
    assert yaml.safe_load((out / "data.yaml").read_text())["val"] == "images/val"
    assert (out / ".afm-written").read_text() == "data.yaml\n"
    (out / "data.yaml").unlink()
    (out / ".afm-written").unlink()
    (out / "data.yaml").write_text("mine")  # a yaml afm did not write is never replaced
    with pytest.raises(SystemExit):
        main(["convert-visdrone", str(real_split), str(out), "--to-yolo", "--split", "train"])
    assert (out / "data.yaml").read_text() == "mine"


def test_infer_writes_yolo_results_of_the_fused_detections(tmp_path):
    from test_infer_e2e import CONFIG, save_tiny_checkpoint

    main(["synth", str(tmp_path / "synth"), "--split", "val", "--images", "1", "--width", "320", "--height", "240"])
    image = next((tmp_path / "synth" / "images").glob("*.jpg"))
    out = tmp_path / "pred"
    main(["infer", str(CONFIG), str(save_tiny_checkpoint(tmp_path / "tiny.pth")), str(image), "--out", str(out),
          "--slice", "160", "--yolo", "--max-per-img", "50"])
    fused = json.loads((out / "predictions.json").read_text())
    classes, boxes, scores = read_yolo(out / "yolo" / f"{image.stem}.txt", (320, 240))
    assert len(fused) == len(classes) > 0
    assert classes.tolist() == [r["category_id"] - 1 for r in fused]  # VisDrone's ids from 1, YOLO's from 0
    np.testing.assert_allclose(boxes, [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in fused)], atol=1e-3)
    np.testing.assert_allclose(scores, [r["score"] for r in fused], atol=1e-6)
    assert "yolo" in (out / ".afm-written").read_text().split()
