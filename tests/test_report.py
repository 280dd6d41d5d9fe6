"""`afm evaluate --analyse / --draw-errors / --report` end to end on three small
images: the files, a self-contained page, and the page as headless Chromium shows it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.coco import build_coco, visdrone_rows_to_labels
from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.viz.analysis_plots import STEP_COLORS
from afmcli.viz.draw import ERROR_COLORS, hex_to_bgr

W, H = 320, 240
NAMES = ("0000001_a", "0000002_b", "0000003_c")


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n objects of classes 1..10; detections: most of them jittered, some relabelled, some background."""
    wh = rng.uniform(8, 40, (n, 2))
    xy = rng.uniform(0, 1, (n, 2)) * ([W, H] - wh)
    cls = rng.integers(1, 11, n)
    gt = np.round(np.c_[xy, wh, np.ones(n), cls, np.zeros((n, 2))])
    found = gt[rng.random(n) < 0.7]
    boxes = found[:, :4] + rng.normal(0, 2, (len(found), 4))
    det_cls = np.where(rng.random(len(found)) < 0.2, rng.integers(1, 11, len(found)), found[:, 5])
    bg = np.c_[rng.uniform(0, W - 30, (5, 2)), rng.uniform(8, 30, (5, 2))]
    det = np.r_[np.c_[boxes, rng.uniform(0.3, 1, len(found)), det_cls], np.c_[bg, rng.uniform(0, 0.8, 5),
                                                                             rng.integers(1, 11, 5)]]
    det[:, 2:4] = np.maximum(det[:, 2:4], 2)
    return gt, np.c_[np.round(det, 2), -np.ones((len(det), 2))]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(5)
    for d in ("annotations", "results", "images"):
        (root / d).mkdir()
    records, labels = [], []
    for i, name in enumerate(NAMES):
        gt, det = _rows(rng, 12 + 6 * i)
        (root / "annotations" / f"{name}.txt").write_text(format_visdrone_lines(gt))
        (root / "results" / f"{name}.txt").write_text(format_visdrone_lines(det))
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), np.full((H, W, 3), 90 + 40 * i, np.uint8))
        records.append({"file_name": f"{name}.jpg", "width": W, "height": H})
        labels.append(visdrone_rows_to_labels(gt, W, H))
    # Our layout's json, Datasets/labels/annotations/val_labels.json, without Datasets/images/val/.
    (root / "labels" / "annotations").mkdir(parents=True)
    (root / "labels" / "annotations" / "val_labels.json").write_text(json.dumps(build_coco(records, labels)))
    return root


@pytest.fixture(scope="module")
def outputs(data):
    """Every output at once (about 5 s of plotting on one core): the tests that read them are slow."""
    out = data / "out"
    main(["evaluate", "--gt", str(data / "annotations"), "--images", str(data / "images"),
          "--pred", str(data / "results"), "--view", "visdrone", "--analyse", str(out / "analysis"),
          "--draw-errors", str(out / "errors"), "--report", str(out / "report")])
    return out


@pytest.mark.slow
def test_analysis_folder(outputs):
    names = sorted(p.name for p in (outputs / "analysis").glob("[!.]*"))
    assert names == ["analysis.json", "coco_pr.png", "confusion_matrix.png", "error_decomposition.png",
                     "error_decomposition_classes.png"]
    analysis = json.loads((outputs / "analysis" / "analysis.json").read_text())
    assert list(analysis["error_decomposition"]["overall"]) == ["all", "tiny", "small", "medium", "large"]
    assert analysis["confusion_matrix"]["labels"][-1] == "background"
    objects = sum(row["objects"] for row in analysis["images"])
    assert np.array(analysis["confusion_matrix"]["counts"])[:10].sum() == objects == 12 + 18 + 24


@pytest.mark.slow
def test_one_error_drawing_per_image_with_its_legend(outputs):
    files = sorted((outputs / "errors").glob("[!.]*"))
    assert [f.name for f in files] == [f"{n}.png" for n in NAMES]  # 320x240: PNG
    drawn = cv2.imread(str(files[0]))
    assert drawn.shape[1] == W and drawn.shape[0] > H  # the legend strip below
    legend = drawn[H:]
    for color in ERROR_COLORS.values():
        assert (legend == color).all(axis=2).sum() > 50


@pytest.mark.slow
def test_report_is_one_self_contained_page(outputs):
    report = outputs / "report"
    html = (report / "index.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert links and all(not link.startswith(("/", "file:")) and (report / link).is_file() for link in links)
    shown = {link for link in links if link.endswith((".png", ".jpg"))}
    assert {"pr/all_classes.png", "analysis/coco_pr.png", "analysis/error_decomposition.png",
            "analysis/confusion_matrix.png"} <= shown
    assert len([s for s in shown if s.startswith("worst/")]) == 3
    # Both views' tables, though only the VisDrone view was asked for on the command line.
    assert "VisDrone toolkit (official)" in html and "COCO view, per class" in html


def test_json_ground_truth_without_its_images_is_one_error(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--gt", str(data / "labels" / "annotations" / "val_labels.json"), "--pred", str(data / "results"),
              "--report", str(tmp_path / "report")])
    assert exc.value.code == 2
    expected = data / "images" / "val" / f"{NAMES[0]}.jpg"
    assert capsys.readouterr().err.strip() == f"afm: error: {expected}: no image file for {NAMES[0]} (pass --images DIR)"
    assert not (tmp_path / "report").exists()
    main(["evaluate", "--gt", str(data / "labels" / "annotations" / "val_labels.json"), "--pred", str(data / "results"),
          "--images", str(data / "images"), "--draw-errors", str(tmp_path / "errors")])
    assert len(list((tmp_path / "errors").glob("[!.]*"))) == 3


def test_error_score_out_of_range_is_one_error(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--gt", str(data / "annotations"), "--images", str(data / "images"),
              "--pred", str(data / "results"), "--analyse", str(tmp_path / "a"), "--error-score", "1.5"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == "afm: error: --error-score must be between 0 and 1, got 1.5"
    assert not (tmp_path / "a").exists()


def _near(image: np.ndarray, color, tolerance: int = 3) -> int:
    return int((np.abs(image.astype(int) - color).max(axis=2) <= tolerance).sum())


# .ci/run installs Chromium and sets this: there the browser test runs, never skips.
REQUIRE_CHROMIUM = os.environ.get("AFM_REQUIRE_CHROMIUM") == "1"
# Headless, offline and from a fresh profile: nothing but the page is fetched or kept.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None and not REQUIRE_CHROMIUM,
                    reason="chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_renders_the_report_with_its_pictures(outputs, tmp_path):
    """The page as a browser shows it: the figures and the drawings load from files beside it."""
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1280,6000", f"--screenshot={shot}",
                    (outputs / "report" / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (6000, 1280)
    assert _near(image, hex_to_bgr(STEP_COLORS[5])) > 1000  # the BG band of the error decomposition
    assert _near(image, ERROR_COLORS["TP"]) > 50  # the gallery's drawings
