"""`afm fuse` on result files: outputs, VisDrone files, and bad input."""

import json

import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.visdrone_format import read_visdrone_file


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def res(image_id, box, score, cat=1):
    return {"image_id": image_id, "bbox": box, "score": score, "category_id": cat}


@pytest.fixture
def files(tmp_path):
    a = write(tmp_path / "a.json", [res(1, [0, 0, 10, 10], 0.9), res(1, [50, 50, 10, 10], 0.4),
                                    res(2, [5, 5, 20, 20], 0.7, 3)])
    b = write(tmp_path / "b.json", [res(1, [1, 0, 10, 10], 0.8), res(2, [60, 60, 5, 5], 0.2, 3)])
    gt = write(tmp_path / "gt.json", {"images": [{"id": 1, "file_name": "one.jpg", "width": 100, "height": 80},
                                                 {"id": 2, "file_name": "two.jpg", "width": 100, "height": 80},
                                                 {"id": 3, "file_name": "three.jpg", "width": 100, "height": 80}]})
    return tmp_path, a, b, gt


def test_nms_fuse_with_visdrone_folder(files):
    tmp, a, b, gt = files
    main(["fuse", a, b, "--out", str(tmp / "f.json"), "--gt", gt, "--visdrone-dir", str(tmp / "vd")])
    fused = json.loads((tmp / "f.json").read_text())
    assert [(r["image_id"], r["bbox"], r["score"]) for r in fused] == [
        (1, [0, 0, 10, 10], 0.9), (1, [50, 50, 10, 10], 0.4), (2, [5, 5, 20, 20], 0.7), (2, [60, 60, 5, 5], 0.2)]
    assert sorted(p.name for p in (tmp / "vd").glob("*.txt")) == ["one.txt", "three.txt", "two.txt"]
    np.testing.assert_allclose(read_visdrone_file(tmp / "vd" / "two.txt"),
                               [[5, 5, 20, 20, 0.7, 3, -1, -1], [60, 60, 5, 5, 0.2, 3, -1, -1]])
    assert read_visdrone_file(tmp / "vd" / "three.txt").shape == (0, 8)


def test_greedy_nmm_and_wbf_from_the_cli(files):
    tmp, a, b, gt = files
    main(["fuse", a, b, "--out", str(tmp / "g.json"), "--method", "greedy-nmm", "--max-per-img", "1"])
    assert [(r["image_id"], r["bbox"]) for r in json.loads((tmp / "g.json").read_text())] == \
        [(1, [0, 0, 11, 10]), (2, [5, 5, 20, 20])]
    main(["fuse", a, b, "--out", str(tmp / "w.json"), "--method", "wbf", "--gt", gt,
          "--weights", "1", "--weights", "1"])
    first = json.loads((tmp / "w.json").read_text())[0]
    # (0.9 * [0,0,10,10] + 0.8 * [1,0,11,10]) / 1.7, score (0.9 + 0.8) / 2
    np.testing.assert_allclose(first["bbox"], [0.8 / 1.7, 0, 10, 10], atol=1e-5)
    assert first["score"] == pytest.approx(0.85)


@pytest.mark.parametrize("extra, message", [
    (["--visdrone-dir", "vd"], "--visdrone-dir needs --gt"),
    (["--weights", "1"], "1 weights given for 2 prediction sources"),
    (["--method", "wbf", "--class-agnostic"], "--class-agnostic is not supported"),
])
def test_bad_options_exit_2(files, capsys, extra, message):
    tmp, a, b, gt = files
    with pytest.raises(SystemExit) as exc:
        main(["fuse", a, b, "--out", str(tmp / "x.json"), *extra])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp / "x.json").exists()


def test_unknown_image_ids_against_gt(files, capsys):
    tmp, a, b, gt = files
    c = write(tmp / "c.json", [res(9, [0, 0, 1, 1], 0.5)])
    with pytest.raises(SystemExit):
        main(["fuse", a, c, "--out", str(tmp / "x.json"), "--gt", gt])
    assert f"{c}: 1 image id(s) not in {gt}, e.g. image_id 9" in capsys.readouterr().err


def test_malformed_result_names_file_and_entry(files, capsys):
    tmp, a, b, gt = files
    c = write(tmp / "c.json", [res(1, [0, 0, 1, 1], 0.5), {"image_id": 1, "bbox": [0, 0, -1, 1],
                                                         "score": 0.3, "category_id": 1}])
    with pytest.raises(SystemExit):
        main(["fuse", c, "--out", str(tmp / "x.json")])
    err = capsys.readouterr().err
    assert f"{c}: results[1]: bbox has a negative width or height: [0, 0, -1, 1]" in err
