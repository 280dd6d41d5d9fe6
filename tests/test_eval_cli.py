"""`afm evaluate` end to end: txt folders and our COCO json give the same numbers,
bad input is one error line with file:line and exit code 2, --json and --plots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.coco import build_coco, visdrone_rows_to_labels
from afmcli.evaluation.coco_view import COCO_STAT_NAMES
from afmcli.evaluation.visdrone import STAT_NAMES

BENCH = Path(__file__).parents[1] / "bench" / "bench_eval.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_eval", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three val-like images (80 detections each) as VisDrone folders, image headers,
    our COCO gt json (converter code) and a COCO results json."""
    bench = _bench()
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(3)
    images = [bench.make_image(rng, f"{i:07d}_v", max_dets=80) for i in range(3)]
    gt_dir, pred_dir, img_dir = bench.write_folders(images, root)
    records = [{"file_name": f"{im.name}.jpg", "width": im.width, "height": im.height} for im in images]
    coco = build_coco(records, [visdrone_rows_to_labels(im.gt, im.width, im.height) for im in images])
    (root / "gt.json").write_text(json.dumps(coco))
    results = [{"image_id": i, "category_id": int(r[5]), "bbox": r[:4].tolist(), "score": float(r[4])}
               for i, im in enumerate(images, start=1) for r in im.det]
    (root / "results.json").write_text(json.dumps(results))
    return root


def evaluate(tmp_path, *args) -> dict:
    out = tmp_path / "out.json"
    main(["evaluate", *map(str, args), "--json", str(out)])
    return json.loads(out.read_text())


def test_folder_and_coco_inputs_give_the_same_numbers(dataset, tmp_path):
    """The json gt keeps unclipped boxes, ignore regions and category-11 rows: the
    toolkit's rows come back exactly, so all three input pairs agree to the bit."""
    coco = json.loads((dataset / "gt.json").read_text())
    assert any("visdrone_bbox" in a for a in coco["annotations"]) and coco["others"]
    from_txt = evaluate(tmp_path, "--gt", dataset / "annotations", "--pred", dataset / "results",
                        "--images", dataset / "images")
    from_json = evaluate(tmp_path, "--gt", dataset / "gt.json", "--pred", dataset / "results")
    from_results = evaluate(tmp_path, "--gt", dataset / "gt.json", "--pred", dataset / "results.json")
    assert from_txt["visdrone"] == from_json["visdrone"] == from_results["visdrone"]
    assert from_txt["coco"] == from_json["coco"] == from_results["coco"]
    assert 0 < from_txt["visdrone"]["AP50"] < 100


def test_json_schema(dataset, tmp_path, capsys):
    out = evaluate(tmp_path, "--gt", dataset / "gt.json", "--pred", dataset / "results", "--classwise")
    assert set(out) == {"visdrone", "coco", "classwise"}
    assert list(out["visdrone"]) == list(STAT_NAMES)
    assert list(out["coco"]) == list(COCO_STAT_NAMES)
    assert out["coco"]["AP_large"] is None or isinstance(out["coco"]["AP_large"], float)
    assert set(out["classwise"]) == {"visdrone", "coco"} and len(out["classwise"]["visdrone"]) == 10
    car = out["classwise"]["visdrone"]["car"]
    assert set(car) == {"AP", "AP50", "AP75", "AR1", "AR10", "AR100", "AR500", "images", "gt"} and car["images"] == 3
    printed = capsys.readouterr().out
    assert f"{out['visdrone']['AP50']:.2f}" in printed and "per class" in printed
    only = evaluate(tmp_path, "--gt", dataset / "gt.json", "--pred", dataset / "results", "--view", "visdrone")
    assert set(only) == {"visdrone", "classwise"}


def test_plots_write_pngs(dataset, tmp_path):
    main(["evaluate", "--gt", str(dataset / "gt.json"), "--pred", str(dataset / "results"),
          "--view", "coco", "--plots", str(tmp_path / "pr")])
    files = sorted(p.name for p in (tmp_path / "pr").glob("*.png"))
    assert "all_classes.png" in files and "car.png" in files
    assert all((tmp_path / "pr" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


def test_missing_result_files_are_no_detections(dataset, tmp_path, capsys):
    """Without the first result file, that image has no detections: recall drops."""
    pred = tmp_path / "results"
    pred.mkdir()
    for f in sorted((dataset / "results").iterdir())[1:]:
        (pred / f.name).write_bytes(f.read_bytes())
    partial = evaluate(tmp_path, "--gt", dataset / "gt.json", "--pred", pred, "--view", "visdrone")
    full = evaluate(tmp_path, "--gt", dataset / "gt.json", "--pred", dataset / "results", "--view", "visdrone")
    assert partial["visdrone"]["AR500"] < full["visdrone"]["AR500"]
    err = capsys.readouterr().err
    assert "1 of 3 result files missing" in err and "0000000_v.txt" in err


def _expect_error(capsys, args) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", *map(str, args)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("afm: error: ")
    return err


def test_malformed_lines_name_file_and_line(dataset, tmp_path, capsys):
    gt = tmp_path / "annotations"
    gt.mkdir()
    for f in (dataset / "annotations").iterdir():
        (gt / f.name).write_bytes(f.read_bytes())
    bad = gt / "0000001_v.txt"
    bad.write_text("1,2,3,4,1,4,0,0\r\n\r\n5,6,7,8,1,4,0\r\n")
    err = _expect_error(capsys, ["--gt", gt, "--pred", dataset / "results", "--images", dataset / "images"])
    assert f"{bad}:3: expected 8 comma-separated fields" in err
    bad.write_text("1,2,3,4,1,4,0,0,\n\n5,6,7,8,2,4,0,0\n")
    err = _expect_error(capsys, ["--gt", gt, "--pred", dataset / "results", "--images", dataset / "images"])
    assert f"{bad}:3: ground truth needs score 0 or 1" in err
    bad.write_text("1,2,3,4,0,0,0,0\n1.5,2,3,4,0,0,0,0\n")
    err = _expect_error(capsys, ["--gt", gt, "--pred", dataset / "results", "--images", dataset / "images"])
    assert f"{bad}:2: ignored region (category 0) with non-integer" in err


def test_bad_arguments(dataset, tmp_path, capsys):
    assert "--images" in _expect_error(capsys, ["--gt", dataset / "annotations", "--pred", dataset / "results"])
    assert "--view" in _expect_error(capsys, ["--gt", dataset / "gt.json", "--pred", dataset / "results",
                                              "--view", "voc"])
    err = _expect_error(capsys, ["--gt", dataset / "annotations", "--pred", dataset / "results.json",
                                 "--images", dataset / "images"])
    assert "COCO json as --gt" in err
    assert "no such" in _expect_error(capsys, ["--gt", tmp_path / "nope", "--pred", dataset / "results"])
