"""`afm evaluate --task mot`: VisDrone2019-MOT's toolkit rules on hand-worked cases, then against
the official toolkit's own numbers (tests/reference_visdrone_mot.json, made by
scripts/mot_toolkit_reference.sh under Octave) on the same files. HOTA is TrackEval's: the
tests check what afm feeds it (hand-worked tracks, perfect and swapped UAVDT tracks).

Rows are VisDrone-MOT rows: frame, id, x, y, w, h, score, category, truncation, occlusion;
category 1 pedestrian, 4 car, 5 van, 9 bus, 10 motor, 0 ignored region, 11 others.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from afmcli.errors import AfmError
from afmcli.evaluation.hota import hota_counts, hota_summary
from afmcli.evaluation.mot import MotSequence, drop_objects, evaluate_sequences
from afmcli.evaluation.mot_loaders import evaluate_mot

sys.path.insert(0, str(Path(__file__).parent))
import mot_cases  # noqa: E402

REFERENCE = json.loads((Path(__file__).parent / "reference_visdrone_mot.json").read_text())


def box(frame, tid, x, y, w=10, h=10, cat=4, score=1):
    return [frame, tid, x, y, w, h, score, cat, -1, -1]


def seq(gt, pred, name="s", height=200, width=200):
    return MotSequence(name, height, width, np.asarray(gt, float).reshape(-1, 10),
                       np.asarray(pred, float).reshape(-1, 10))


def track(tid, frames, x=20, y=20, cat=4, dx=0):
    return [box(f, tid, x + dx * f, y, cat=cat) for f in frames]


# --- hand-worked cases ----------------------------------------------------------------------------

def test_a_perfect_result_scores_100():
    gt = track(1, range(1, 11)) + track(2, range(3, 9), x=100, cat=1) + track(3, range(1, 6), y=100, cat=9, dx=5)
    r = evaluate_sequences([seq(gt, gt)])
    for key in ("MOTA", "MOTP", "IDF1", "IDP", "IDR", "HOTA", "DetA", "AssA", "Rcll", "Prcn"):
        assert r.overall[key] == pytest.approx(100), key
    assert (r.overall["FP"], r.overall["FN"], r.overall["IDs"], r.overall["MT"], r.overall["GT"]) == (0, 0, 0, 3, 3)
    assert r.classes["car"]["MOTA"] == 100 and r.classes["van"]["MOTA"] == 0  # no van: 0, as printed


def test_k_id_switches_count_k():
    gt = track(1, range(1, 11))
    pred = track(7, range(1, 4)) + track(8, range(4, 8)) + track(9, range(8, 11))  # new id at 4 and at 8
    r = evaluate_sequences([seq(gt, pred)])
    assert r.overall["IDs"] == 2
    assert r.overall["MOTA"] == pytest.approx(100 * (1 - 2 / 10))
    # ID measures: the best one-to-one pairing keeps id 8's 4 frames: IDF1 = 2 * 4 / (10 + 10).
    assert r.overall["IDF1"] == pytest.approx(40)
    assert r.overall["FM"] == 0 and r.overall["MT"] == 1


def test_no_switch_is_counted_across_a_frame_without_the_object():
    """clearMOTMex counts a switch only if the object is in the previous frame's ground truth."""
    gt = track(1, [1, 2, 3, 5, 6, 7])
    pred = track(7, [1, 2, 3]) + track(8, [5, 6, 7])
    r = evaluate_sequences([seq(gt, pred)])
    assert r.overall["IDs"] == 0
    assert r.overall["FM"] == 1  # tracked in 1-3 and 5-7: one interruption


def test_fp_fn_counts_and_iou_one_half_matches():
    gt = [box(1, 1, 0, 0), box(1, 2, 50, 0), box(1, 3, 100, 0)]
    pred = [box(1, 5, 0, 0, h=20),      # IoU exactly 0.5: a match
            box(1, 6, 56, 0),           # IoU 40/160 = 0.25: a false positive, and gt 2 a miss
            box(1, 7, 100, 0),
            box(1, 8, 150, 150)]        # nothing there
    r = evaluate_sequences([seq(gt, pred)])
    assert (r.overall["FP"], r.overall["FN"], r.overall["IDs"]) == (2, 1, 0)
    assert r.overall["MOTA"] == pytest.approx(100 * (1 - 3 / 3))
    assert r.overall["MOTP"] == pytest.approx(100 * (1 - 0.5 / 2))  # 1 - mean(1 - IoU) over 2 matches


def test_a_box_half_inside_an_ignored_region_is_dropped_from_truth_and_results():
    """Region x=1, y=1, w=20, h=100 paints columns 1..21; a 20x10 box at x=11 covers
    10 x 10 of those pixels by the toolkit's integral-image sum (its first row and column
    left out): 100 / 200 = 0.5 -> dropped; at x=12, 90 / 200 -> kept."""
    region = [1, -1, 1, 1, 20, 100, 0, 0, 0, 0]
    half_in, less = box(1, 2, 11, 11, w=20), box(1, 3, 12, 40, w=20)
    rows = np.array([region, half_in, less, box(1, 4, 150, 150)], float)
    kept = drop_objects(rows, rows, 200, 200)
    assert kept[:, 1].tolist() == [3, 4]
    # gt: the half-inside box is not missed; results: a box there is not a false positive.
    gt = [region, half_in, box(1, 4, 150, 150)]
    r = evaluate_sequences([seq(gt, [box(1, 9, 150, 150), box(1, 8, 11, 11, w=20)])])
    assert (r.overall["FP"], r.overall["FN"]) == (0, 0)
    r = evaluate_sequences([seq(gt, [box(1, 9, 150, 150), box(1, 8, 12, 40, w=20)])])
    assert (r.overall["FP"], r.overall["FN"]) == (1, 0)


def test_others_boxes_are_ignored_regions_and_regions_are_per_frame():
    others = [1, 5, 50, 50, 40, 40, 0, 11, 0, 0]
    gt = [others, box(1, 1, 150, 150), box(2, 1, 150, 150)]
    pred = [box(1, 9, 55, 55), box(2, 9, 55, 55), box(1, 1, 150, 150), box(2, 1, 150, 150)]
    r = evaluate_sequences([seq(gt, pred)])
    assert r.overall["FP"] == 1  # frame 1's box is inside the 'others' box; frame 2 has no region


def test_results_of_a_class_without_ground_truth_in_the_sequence_are_left_out():
    gt = track(1, range(1, 4))
    pred = gt + track(5, range(1, 4), x=100, cat=9) + track(6, range(1, 4), x=100, y=100, cat=10)
    r = evaluate_sequences([seq(gt, pred)])
    assert r.overall["FP"] == 0 and r.overall["MOTA"] == 100
    assert math.isnan(r.sequences["s"]["HOTA"]) is False
    assert r.classes["bus"]["FP"] == 0 and ("s", "bus") not in r.counts


def test_one_id_in_two_classes_is_two_tracks():
    """Each class is scored alone: a tracker that numbers ids per class may reuse them."""
    gt = track(1, range(1, 5)) + track(2, range(1, 5), x=100, cat=5)
    pred = track(3, range(1, 5)) + track(3, range(1, 5), x=100, cat=5)
    r = evaluate_sequences([seq(gt, pred)])
    assert (r.overall["MOTA"], r.overall["IDF1"], r.overall["GT"]) == (100, 100, 2)


def test_a_sequence_without_evaluated_classes_is_nan_where_the_toolkit_prints_nan():
    """Only people (2) and bicycles (3): no entry. Per sequence the toolkit prints NaN (json:
    null) but IDP and MOTP 0; per class NaN becomes 0; the other sequence still counts."""
    people = seq(track(1, range(1, 4), cat=2) + track(2, range(1, 4), x=60, cat=3), track(5, range(1, 4), cat=2),
                 "p")
    r = evaluate_sequences([people, seq(track(1, range(1, 4)), track(1, range(1, 4)), "cars")])
    numbers = r.to_json()
    p = numbers["sequences"]["p"]
    assert p["MOTA"] is None and p["HOTA"] is None and (p["IDP"], p["MOTP"], p["FP"]) == (0, 0, 0)
    assert numbers["classes"]["van"]["MOTA"] == 0 and numbers["overall"]["MOTA"] == 100


def test_a_wrong_class_is_a_miss_in_its_true_class():
    gt = track(1, range(1, 5)) + track(2, range(1, 5), x=100, cat=9)
    pred = track(1, range(1, 5)) + track(2, range(1, 5), x=100, cat=6)  # the bus called a truck
    r = evaluate_sequences([seq(gt, pred)])
    assert r.classes["bus"]["FN"] == 4 and r.classes["bus"]["ML"] == 1
    assert r.overall["FP"] == 0  # no truck in the ground truth: its results are not scored


def test_results_after_the_last_ground_truth_frame_are_cut():
    gt = track(1, range(1, 4))
    r = evaluate_sequences([seq(gt, gt + track(1, range(4, 9)))])
    assert r.overall["FP"] == 0


def test_mostly_tracked_partially_tracked_mostly_lost():
    """MT: >= 80% of the track's frames matched, ML: < 20%, PT: between, but CLEAR_MOT_HUN.m
    counts PT only if the last result frame >= the NUMBER of the track's rows: else none."""
    gt = track(1, range(1, 11)) + track(2, range(1, 11), x=60) + track(3, range(1, 11), x=120)
    pred = track(1, range(1, 11)) + track(2, range(1, 6), x=60) + track(3, range(1, 2), x=120)
    r = evaluate_sequences([seq(gt, pred)])
    assert (r.overall["MT"], r.overall["PT"], r.overall["ML"]) == (1, 1, 1)
    r = evaluate_sequences([seq(gt, [row for row in pred if row[0] < 10])])  # results end at frame 9 < 10 rows
    assert (r.overall["MT"], r.overall["PT"], r.overall["ML"], r.overall["GT"]) == (1, 0, 1, 3)


def test_hota_hand_worked():
    """One object over 2 frames, found in frame 1 only: DetA = 1/2; the pair's association
    1 / (2 + 1 - 1) = 1/2 -> HOTA = sqrt(1/4) = 50%, at every alpha."""
    gt = np.array([[1, 1, 0, 0, 10, 10], [2, 1, 0, 0, 10, 10]], float)
    s = hota_summary([hota_counts(gt, gt[:1])])
    assert (s["HOTA"], s["DetA"], s["AssA"], s["DetRe"], s["DetPr"], s["AssRe"], s["AssPr"], s["LocA"]) == \
        pytest.approx((50, 50, 50, 50, 100, 50, 100, 100))
    # One object over 4 frames, two result ids of 2 frames each: DetA 1, AssA 2 * (2 * 2/4) / 4.
    gt4 = np.array([[f, 1, 0, 0, 10, 10] for f in range(1, 5)], float)
    pred4 = gt4.copy()
    pred4[2:, 1] = 2
    s = hota_summary([hota_counts(gt4, pred4)])
    assert (s["HOTA"], s["DetA"], s["AssA"]) == pytest.approx((100 * math.sqrt(0.5), 100, 50))
    # Combined (TrackEval's combine_sequences): TP, FN summed, AssA weighted by TP.
    s = hota_summary([hota_counts(gt, gt), hota_counts(gt, gt[:1])])
    det_a, ass_a = 3 / 4, (2 * 1 + 1 * 0.5) / 3
    expected = (100 * det_a, 100 * ass_a, 100 * math.sqrt(det_a * ass_a))
    assert (s["DetA"], s["AssA"], s["HOTA"]) == pytest.approx(expected)
    assert math.isnan(hota_summary([])["HOTA"])


def test_two_boxes_of_one_track_in_a_frame_are_refused():
    gt = track(1, range(1, 4))
    with pytest.raises(AfmError, match="two boxes of track 7 in frame 2"):
        evaluate_sequences([seq(gt, track(7, range(1, 4)) + [box(2, 7, 100, 100)])])


# --- the official toolkit's numbers on the same files -------------------------------------------

@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("mot_cases")
    notes = {case: mot_cases.write_case(case, root / case) for case in REFERENCE["cases"]}
    return root, notes, {}


def _results(cases, case):
    """The evaluation of a written case (once per module)."""
    root, _, done = cases
    if case not in done:
        done[case] = evaluate_mot(root / case / "annotations", root / case / "results", root / case / "sequences")
    return done[case]


def _close(ours: float, theirs: float | None) -> bool:
    return math.isnan(ours) if theirs is None else math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("case", sorted(REFERENCE["cases"]))
def test_equals_the_official_toolkit(cases, case):
    """Every number the toolkit prints (per sequence, per class, overall), at full precision."""
    ref = REFERENCE["cases"][case]
    r = _results(cases, case)
    assert sorted(r.sequences) == sorted(ref["sequences"])
    wrong = [(scope, name, key, ours[name][key], value)
             for scope, ours in (("sequences", r.sequences), ("classes", r.classes))
             for name, numbers in ref[scope].items() for key, value in numbers.items()
             if not _close(ours[name][key], value)]
    wrong += [("overall", "", key, r.overall[key], value) for key, value in ref["overall"].items()
              if not _close(r.overall[key], value)]
    assert not wrong


def test_uavdt_perturbations_count_what_was_done(cases):
    """Perfect: 100. Swapped: two switches per exchanged pair. Dropped: a miss per removed box
    that the toolkit evaluates (not dropped by an ignored region), no false positive."""
    notes = cases[1]
    perfect = _results(cases, "uavdt_perfect").overall
    assert (perfect["MOTA"], perfect["IDF1"], perfect["HOTA"]) == (100, 100, pytest.approx(100))
    swapped = _results(cases, "uavdt_swapped").overall
    pairs = sum(len(n["swapped_pairs"]) for n in notes["uavdt_swapped"].values())
    assert pairs >= 8 and swapped["IDs"] == 2 * pairs and swapped["FP"] == swapped["FN"] == 0
    assert swapped["DetA"] == pytest.approx(100) and 70 < swapped["AssA"] < 95  # HOTA sees the swaps
    dropped = _results(cases, "uavdt_dropped").overall
    evaluated = 0
    for name, note in notes["uavdt_dropped"].items():
        gt = mot_cases.uavdt_ground_truth(name)
        kept = drop_objects(gt, gt, *mot_cases.UAVDT_SIZE)
        kept_rows = {tuple(r) for r in kept[:, :2].astype(int).tolist()}
        evaluated += len({tuple(r) for r in note["removed_rows"]} & kept_rows)
    assert evaluated > 600 and (dropped["FN"], dropped["FP"], dropped["IDs"]) == (evaluated, 0, 0)


# --- the command ----------------------------------------------------------------------------------

def _mot_args(root: Path) -> list[str]:
    return ["evaluate", "--task", "mot", "--gt", str(root / "annotations"), "--images", str(root / "sequences"),
            "--pred", str(root / "results")]


def _expect_error(capsys, argv) -> str:
    from afmcli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_prints_tables_and_writes_json(tmp_path, capsys):
    from afmcli.cli import main

    mot_cases.write_case("synthetic", tmp_path / "case")
    main([*_mot_args(tmp_path / "case"), "--json", str(tmp_path / "mot.json")])
    printed = capsys.readouterr().out
    assert "Tracking" in printed and "synth_a" in printed and "pedestrian" in printed
    numbers = json.loads((tmp_path / "mot.json").read_text())
    ref = REFERENCE["cases"]["synthetic"]
    assert numbers["overall"]["MOTA"] == pytest.approx(ref["overall"]["MOTA"], rel=1e-12)
    assert numbers["classes"]["van"]["IDF1"] == pytest.approx(ref["classes"]["van"]["IDF1"], rel=1e-12)
    assert set(numbers["sequences"]) == {"synth_a", "synth_b"}


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    root = tmp_path / "case"
    mot_cases.write_case("synthetic", root)
    args = _mot_args(root)
    assert "needs --images" in _expect_error(capsys, args[:5] + args[7:])
    assert "not --plots" in _expect_error(capsys, [*args, "--plots", str(tmp_path / "p")])
    assert "not --view" in _expect_error(capsys, [*args, "--view", "coco"])
    assert "not --size-ranges" in _expect_error(capsys, [*args, "--size-ranges", "aitod"])
    assert "not --split" in _expect_error(capsys, [*args, "--split", "test"])
    assert "--task must be det or mot" in _expect_error(capsys, [*args[:2], "track", *args[3:]])
    result = root / "results" / "synth_b.txt"
    lines = result.read_text().splitlines()
    result.write_text("\n".join([*lines[:2], "0," + lines[2].split(",", 1)[1], *lines[3:]]) + "\n")
    assert f"{result}:3: frames are numbered 1, 2, ..." in _expect_error(capsys, args)
    result.write_text("\n".join(lines[:2] + [lines[2] + ",7"]) + "\n")
    assert f"{result}:3: expected 10 comma-separated fields" in _expect_error(capsys, args)
    result.unlink()
    (root / "results" / "mot").mkdir()
    (root / "results" / "synth_a.txt").rename(root / "results" / "mot" / "synth_a.txt")
    err = _expect_error(capsys, args)
    assert "no result file for any of the 2 sequences" in err and "files of `afm track` are in" in err
    assert "no sequence folders" in _expect_error(capsys, [*args[:6], str(root / "sequences" / "synth_a"), *args[7:]])


def test_a_missing_result_file_is_a_warning_and_no_tracks(tmp_path):
    root = tmp_path / "case"
    mot_cases.write_case("synthetic", root)
    (root / "results" / "synth_b.txt").unlink()
    with pytest.warns(UserWarning, match="1 of 2 result files missing"):
        r = evaluate_mot(root / "annotations", root / "results", root / "sequences")
    assert r.sequences["synth_b"]["FN"] == 23 and r.sequences["synth_b"]["IDF1"] == 0
