"""`afm track`, afmcli.track and the trackers: mmdetection's ByteTracker / OCSORTTracker on
hand-made detections, on ground-truth-derived detections of synthetic sequences, and the
whole command with the tiny TOOD (resume, out-of-order frame names, output safety)."""

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.synth_video import synth_sequence, write_synth_sequences
from afmcli.detections import Detections
from afmcli.evaluation.mot_loaders import evaluate_mot
from afmcli.inference.sources import ImageItem
from afmcli.inference.writers.coco_json import write_results_json
from afmcli.io import SharedFolder
from afmcli.tracking.build import build_tracker
from afmcli.tracking.run import track_detections
from afmcli.tracking.sources import open_track_source, sequence_of
from afmcli.tracking.writers import TrackRun
from test_infer_e2e import save_tiny_checkpoint
from test_infer_scale import STATE_DIR, fail_after, one_thread  # noqa: F401  (one torch thread)

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_track", ROOT / "bench" / "bench_track.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

CONFIG = Path(__file__).parent / "fixtures" / "tiny_tood_128.py"
FAST = ["--slice", "96", "--batch-size", "4", "--max-per-img", "50"]
# The random tiny TOOD scores about 0.02 to 0.2: low thresholds so that it makes tracks.
LOW = ["--track-high", "0.05", "--track-low", "0.02", "--track-init", "0.05"]
TRACKERS = ("bytetrack", "ocsort")


def box(cx, cy, w=12.0, h=8.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run_frames(name, frames, **settings):
    tracker = build_tracker({"type": name, **settings})
    tracker.reset()
    return [tracker.update(Detections(*zip(*dets)) if dets else Detections.empty()) for dets in frames]


# -- the trackers on hand-made detections -------------------------------------------------

@pytest.mark.parametrize("name", TRACKERS)
def test_an_object_at_constant_speed_keeps_one_id(name):
    frames = [[(box(20 + 3 * k, 40), 0.9, 4)] for k in range(30)]
    out = run_frames(name, frames)
    assert all(len(t) == 1 for t in out)
    assert {int(t.ids[0]) for t in out} == {1}
    np.testing.assert_allclose(out[-1].boxes[0], box(20 + 3 * 29, 40), atol=1e-4)  # the detection's box


@pytest.mark.parametrize("name", TRACKERS)
def test_two_crossing_objects_keep_their_ids(name):
    """Two cars of one class on crossing paths meet at frame 15 (boxes overlap from frame 12
    to 18); each keeps its id through the crossing."""
    frames = [[(box(10 + 4 * k, 60), 0.9, 4), (box(130 - 4 * k, 64), 0.85, 4)] for k in range(31)]
    out = run_frames(name, frames)
    first = {int(i): b[0] for i, b in zip(out[0].ids, out[0].boxes)}
    last = {int(i): b[0] for i, b in zip(out[-1].ids, out[-1].boxes)}
    assert sorted(first) == sorted(last) == [1, 2]
    # the id that started on the left ends on the right
    left = min(first, key=first.get)
    assert last[left] == max(last.values())
    assert all(sorted(t.ids.tolist()) == [1, 2] for t in out)


@pytest.mark.parametrize("name", TRACKERS)
def test_classes_never_share_a_track_and_a_new_sequence_counts_from_1(name):
    tracker = build_tracker({"type": name})
    for _ in range(2):
        tracker.reset()
        out = [tracker.update(Detections([box(50, 50), box(50, 50)], [0.9, 0.9], [1, 4])) for _ in range(5)]
        assert [sorted(t.ids.tolist()) for t in out] == [[1, 2]] * 5
        assert all(dict(zip(t.ids.tolist(), t.labels.tolist())) == dict(zip(out[0].ids.tolist(),
                                                                             out[0].labels.tolist())) for t in out)


@pytest.mark.parametrize("name", TRACKERS)
def test_a_low_scored_first_frame_starts_no_track(name):
    out = run_frames(name, [[(box(20, 20), 0.5, 1)]], init=0.7)
    assert len(out[0]) == 0


def test_tracker_settings_are_checked_by_name(capsys):
    from afmcli.errors import ParameterError

    with pytest.raises(ParameterError, match="direction_weight.*not a setting of bytetrack"):
        build_tracker({"type": "bytetrack", "direction_weight": 0.2})
    with pytest.raises(ParameterError, match=r"match_iou must be in \[0, 1\], got 1.5"):
        build_tracker({"type": "ocsort", "match_iou": 1.5})
    with pytest.raises(ParameterError, match="tracker.*bytetrack, ocsort.*'sort'"):
        build_tracker({"type": "sort"})


# -- synthetic sequences -------------------------------------------------------------------

def test_track_help_gives_each_trackers_own_defaults():
    """afm track's help states the defaults in brackets; they must be the settings classes'."""
    import re
    from dataclasses import fields

    import typer.main

    from afmcli.cli import app
    from afmcli.commands.track import TRACKER_SETTINGS
    from afmcli.tracking.build import tracker_class

    helps = {p.name: p.help for p in typer.main.get_command(app).commands["track"].params}
    for name in TRACKER_SETTINGS:
        defaults = {tracker: {f.name: f.default for f in fields(tracker_class(tracker).settings_class)}[name]
                    for tracker in ("bytetrack", "ocsort") if name in
                    {f.name for f in fields(tracker_class(tracker).settings_class)}}
        stated = re.search(r"\[([^\]]+)\]\.?$", helps[name]).group(1)
        values = set(defaults.values())
        expected = (str(values.pop()) if len(values) == 1
                    else ", ".join(f"{tracker} {value}" for tracker, value in defaults.items()))
        assert stated == expected, name


def test_synth_sequences_are_deterministic_in_visdrone_mot_layout(tmp_path):
    write_synth_sequences(tmp_path / "a", 2, 8, seed=3, width=160, height=120, workers=1)
    write_synth_sequences(tmp_path / "b", 2, 8, seed=3, width=160, height=120, workers=2)
    write_synth_sequences(tmp_path / "c", 2, 8, seed=4, width=160, height=120, workers=1)

    def digest(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    a = digest(tmp_path / "a")
    assert a == digest(tmp_path / "b") and a != digest(tmp_path / "c")
    assert sorted(k for k in a if k.startswith("annotations")) == ["annotations/synth_seq_0001.txt",
                                                                  "annotations/synth_seq_0002.txt"]
    assert sorted(k for k in a if "synth_seq_0002/" in k) == [f"sequences/synth_seq_0002/{f:07d}.jpg"
                                                              for f in range(1, 9)]
    rows = np.loadtxt(tmp_path / "a/annotations/synth_seq_0001.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and set(rows[:, 0].astype(int)) == set(range(1, 9))
    objects, regions = rows[rows[:, 7] > 0], rows[rows[:, 7] == 0]
    assert set(objects[:, 7].astype(int)) <= {1, 4, 5, 6, 9} and (objects[:, 6] == 1).all()
    assert (objects[:, 1] >= 1).all() and (regions[:, [1, 6]] == 0).all()
    for frame in range(1, 9):  # one id once per frame; boxes inside the image
        ids = objects[objects[:, 0] == frame, 1]
        assert len(ids) == len(set(ids))
    assert (objects[:, 2] >= 0).all() and (objects[:, 2] + objects[:, 4] <= 160).all()


def test_synth_objects_move_stop_cross_and_leave():
    rows = np.concatenate([r for _, _, r in synth_sequence(0, 1, 60, 320, 240, objects=12, crossings=2)])
    obj = rows[rows[:, 7] > 0]
    moved, stopped, left = 0, 0, 0
    for tid in np.unique(obj[:, 1]):
        t = obj[obj[:, 1] == tid]
        steps = np.abs(np.diff(t[:, 2:4], axis=0)).sum(axis=1)
        moved += bool((steps > 0).any())
        stopped += bool(((steps == 0) & (t[1:, 8] == 0)).sum() >= 3 and (steps > 0).any())
        left += t[-1, 0] < 60
    assert moved >= 10 and stopped >= 1 and left >= 1
    crossing = 0
    for frame in range(1, 61):  # two objects of one class overlapping
        f = obj[obj[:, 0] == frame]
        iou = bench._iou(f[:, 2:6], f[:, 2:6]) * (f[:, None, 7] == f[None, :, 7])
        np.fill_diagonal(iou, 0)
        crossing += bool((iou > 0.2).any())
    assert crossing >= 2


def test_synth_sequences_cli(tmp_path, capsys):
    main(["synth", str(tmp_path / "s"), "--sequences", "1", "--frames", "3", "--width", "128", "--height", "96"])
    assert "tracks" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s/sequences/synth_seq_0001").iterdir()) == [
        "0000001.jpg", "0000002.jpg", "0000003.jpg"]
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "t"), "--sequences", "1", "--frames", "1"])
    assert "--sequences must be at least 1 and --frames at least 2, got 1 and 1" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


# -- the tracking stage on ground-truth-derived detections ---------------------------------

def write_detections(out: Path, data: Path, seed: int = 0) -> None:
    """OUT/detections/predictions.json as `afm infer` writes it, from the ground truth with
    noise (bench_track.noisy_detections: a detector that sees well)."""
    rng = np.random.default_rng(seed)
    gts = {ann.stem: np.loadtxt(ann, delimiter=",", ndmin=2) for ann in (data / "annotations").glob("*.txt")}
    per_image = {}
    for item in open_track_source(data / "sequences").items:
        rows = gts[sequence_of(item)]
        per_image[item.image_id] = bench.noisy_detections(rows[rows[:, 0] == item.frame], rng, size=(320, 240))
    write_results_json(out / "detections" / "predictions.json", per_image)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    data = tmp_path_factory.mktemp("seq") / "data"
    write_synth_sequences(data, 2, 40, seed=1, width=320, height=240, objects=10, crossings=2, workers=1)
    return data


@pytest.mark.parametrize("name", TRACKERS)
def test_synthetic_sequences_tracked_with_consistent_ids(sequences, tmp_path, name):
    """Each true track is followed mostly by one id, and MOTA, IDF1, HOTA above floors, for a
    detector that sees well (5% box jitter, 10% missed, a false box a frame)."""
    write_detections(tmp_path, sequences)
    source = open_track_source(sequences / "sequences")
    stats = track_detections(source, tmp_path / "detections", SharedFolder(tmp_path, "afm track", "out"),
                             {"type": name}, TrackRun())
    assert (stats.sequences, stats.frames) == (2, 80)
    for ann in sorted((sequences / "annotations").glob("*.txt")):
        gt = np.loadtxt(ann, delimiter=",", ndmin=2)
        pred = np.loadtxt(tmp_path / "mot" / ann.name, delimiter=",", ndmin=2)
        challenge = np.loadtxt(tmp_path / "motchallenge" / ann.name, delimiter=",", ndmin=2)
        np.testing.assert_array_equal(challenge[:, :7], pred[:, :7])
        assert (challenge[:, 7:] == -1).all() and (pred[:, 8:] == -1).all()
        check = bench.id_consistency(gt, pred)
        assert check["matched"] > 0.8 and check["id_recall"] > 0.75 and check["mostly_one_id"] > 0.7, check
    # VisDrone2019-MOT's protocol (afm evaluate --task mot): measured MOTA 82.5 / 81.7, IDF1 89.7 / 90.1,
    # HOTA 70.0 / 70.3 for ByteTrack / OC-SORT (mmdet's defaults: MOTA 72.0 / 75.5, IDF1 80.3 / 81.0)
    result = evaluate_mot(sequences / "annotations", tmp_path / "mot", sequences / "sequences").overall
    assert result["MOTA"] > 78 and result["IDF1"] > 85 and result["HOTA"] > 65, result


# -- the command, with the tiny TOOD -------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    write_synth_sequences(root / "data", 2, 5, seed=0, width=192, height=144, workers=1)
    return root, root / "data" / "sequences", save_tiny_checkpoint(root / "tiny.pth", config=CONFIG)


def tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and STATE_DIR not in p.parts}


@pytest.fixture(scope="module")
def reference(setup):
    root, frames, ckpt = setup
    out = root / "reference"
    main(["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST, *LOW])
    return out


def test_track_writes_mot_files_per_sequence(setup, reference):
    files = tree(reference)
    assert {"mot/synth_seq_0001.txt", "mot/synth_seq_0002.txt", "motchallenge/synth_seq_0001.txt",
            "detections/predictions.json", "detections/visdrone/synth_seq_0001/0000005.txt"} <= set(files)
    rows = np.loadtxt(reference / "mot/synth_seq_0001.txt", delimiter=",", ndmin=2)
    assert len(rows) > 0 and rows.shape[1] == 10
    assert set(rows[:, 0].astype(int)) <= set(range(1, 6)) and (np.diff(rows[:, 0]) >= 0).all()
    assert (rows[:, 1] >= 1).all() and (rows[:, 8:] == -1).all() and set(rows[:, 7].astype(int)) <= set(range(1, 11))
    for frame in np.unique(rows[:, 0]):  # one box per id and frame
        ids = rows[rows[:, 0] == frame, 1]
        assert len(ids) == len(set(ids))
    manifest = (reference / ".afm-written").read_text().split()
    assert manifest == ["detections", "mot", "motchallenge"]


def test_killed_detection_resumes_to_the_same_bytes(setup, reference, tmp_path, monkeypatch):
    root, frames, ckpt = setup
    out = tmp_path / "t"
    args = ["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST, *LOW]
    fail_after(monkeypatch, 4)
    with pytest.raises(SystemExit):
        main(args)
    assert not (out / "mot").exists()
    monkeypatch.undo()
    main(args)
    assert tree(out) == tree(reference)


def test_killed_tracking_leaves_nothing_and_resumes_to_the_same_bytes(setup, reference, tmp_path, monkeypatch):
    root, frames, ckpt = setup
    out = tmp_path / "t"
    args = ["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST, *LOW]
    from afmcli.tracking.writers.visdrone_mot import VisDroneMotWriter

    def killed(self, *a):
        raise KeyboardInterrupt

    monkeypatch.setattr(VisDroneMotWriter, "end_sequence", killed)
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        main(args)
    assert not (out / "mot").exists() and not (out / "motchallenge").exists()
    monkeypatch.undo()
    main(args)
    assert tree(out) == tree(reference)


def test_frames_out_of_order_on_disk_are_tracked_in_frame_order(setup, reference, tmp_path):
    """Frames 0000001.jpg .. 0000005.jpg renamed 9.jpg .. 13.jpg ("10" sorts before "9" as text)
    and written to disk in reverse: the same tracks, frames numbered as the names say."""
    root, frames, ckpt = setup
    shuffled = tmp_path / "sequences"
    for seq in sorted(frames.iterdir()):
        (shuffled / seq.name).mkdir(parents=True)
        for image in sorted(seq.iterdir(), reverse=True):
            shutil.copy(image, shuffled / seq.name / f"{int(image.stem) + 8}.jpg")
    items = open_track_source(shuffled).items
    assert [it.frame for it in items] == [9, 10, 11, 12, 13] * 2
    assert items[1].path.name == "10.jpg" and items[1].name == "synth_seq_0001/0000010"
    out = tmp_path / "t"
    main(["track", str(CONFIG), str(ckpt), str(shuffled), "--out", str(out), *FAST, *LOW])
    for name in ("mot/synth_seq_0001.txt", "mot/synth_seq_0002.txt", "motchallenge/synth_seq_0002.txt"):
        lines = (out / name).read_text().splitlines(keepends=True)
        renumbered = "".join(f"{int(line.split(',', 1)[0]) - 8},{line.split(',', 1)[1]}" for line in lines)
        assert renumbered == (reference / name).read_text()


def test_viz_draws_ids_and_another_tracker_retracks_from_stored_detections(setup, reference, tmp_path, capsys):
    root, frames, ckpt = setup
    out = tmp_path / "t"
    shutil.copytree(reference, out)
    main(["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST, *LOW, "--viz"])
    assert capsys.readouterr().out.split("frames detected now")[1].split()[1] == "0"  # detections reused
    assert sorted(p.name for p in (out / "viz" / "synth_seq_0002").iterdir()) == [f"{f:07d}.jpg" for f in range(1, 6)]
    main(["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST, "--tracker", "ocsort",
          "--track-score", "0.02", "--track-init", "0.05"])
    assert not (out / "viz").exists()  # an earlier run's drawing, not made this time: removed
    assert (out / "mot/synth_seq_0001.txt").read_bytes() != (reference / "mot/synth_seq_0001.txt").read_bytes()
    main(["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST, *LOW, "--viz-video"])
    video = cv2.VideoCapture(str(out / "viz" / "synth_seq_0001.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 192
    video.release()


def test_never_replaces_what_afm_did_not_write(setup, tmp_path, capsys):
    root, frames, ckpt = setup
    out = tmp_path / "t"
    (out / "mot").mkdir(parents=True)
    (out / "mot" / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit) as exc:
        main(["track", str(CONFIG), str(ckpt), str(frames), "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "mot: exists and was not written by afm track" in err
    assert (out / "mot" / "mine.txt").read_text() == "keep" and not (out / "detections").exists()


def test_bad_sources_and_settings_are_one_line(setup, tmp_path, capsys):
    root, frames, ckpt = setup
    bad = tmp_path / "seq"
    bad.mkdir()
    shutil.copy(next(iter(sorted((frames / "synth_seq_0001").iterdir()))), bad / "first.jpg")
    for args, message in (([str(bad)], "first.jpg: no frame number at the end of its name"),
                          ([str(frames), "--tracker", "sort"], "--tracker must be one of bytetrack, ocsort"),
                          ([str(frames), "--direction-weight", "0.3"],
                           "--direction-weight is not a setting of bytetrack"),
                          ([str(frames), "--viz", "--trail", "-1"], "--trail must be >= 0, got -1"),
                          ([str(frames), "--viz-video", "--fps", "0"], "--fps must be > 0, got 0.0")):
        with pytest.raises(SystemExit):
            main(["track", str(CONFIG), str(ckpt), *args, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "o" / "detections").exists()  # refused before any work


def test_api_track_yields_frames_in_order_with_ids(setup, reference):
    import afmcli

    root, frames, ckpt = setup
    model = afmcli.load_model(CONFIG, ckpt)
    got = list(afmcli.track(model, frames, slice=96, batch_size=4, max_per_img=50, high=0.05, low=0.02,
                            init=0.05))
    assert [(s, item.frame) for s, item, _ in got] == [(f"synth_seq_000{k}", f) for k in (1, 2) for f in range(1, 6)]
    rows = np.loadtxt(reference / "mot/synth_seq_0001.txt", delimiter=",", ndmin=2)
    for sequence, item, tracked in got[:5]:
        assert isinstance(item, ImageItem) and tracked.ids.dtype == np.int64
        here = rows[rows[:, 0] == item.frame]
        # the command tracks the 4-decimal detections it stored: the same ids and boxes to 1e-3
        order = np.argsort(tracked.ids)
        np.testing.assert_array_equal(tracked.ids[order], here[:, 1])
        np.testing.assert_allclose(tracked.boxes[order, :2], here[:, 2:4], atol=2e-3)


def test_videos_and_a_single_sequence_folder_are_sequences(setup, tmp_path):
    from test_infer_scale import write_video

    root, frames, ckpt = setup
    single = open_track_source(frames / "synth_seq_0002")
    assert [(it.name, it.frame) for it in single.items][:2] == [("synth_seq_0002/0000001", 1),
                                                               ("synth_seq_0002/0000002", 2)]
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "b.avi", 4)
    write_video(videos / "a.avi", 3)
    out = tmp_path / "t"
    main(["track", str(CONFIG), str(ckpt), str(videos), "--out", str(out), *FAST, *LOW])
    assert sorted(p.name for p in (out / "mot").glob("*.txt")) == ["a.txt", "b.txt"]
    rows = np.loadtxt(out / "mot" / "b.txt", delimiter=",", ndmin=2)
    assert set(rows[:, 0].astype(int)) <= {1, 2, 3, 4} and 4 in rows[:, 0]


def test_stored_detections_stream_across_chunks_and_keep_frames_without_detections(tmp_path):
    from afmcli.tracking.run import stored_detections, stream_results

    dets = Detections([[1.5, 2.25, 10.125, 20.0], [0, 0, 3, 4]], [0.9, 1 / 3], [4, 1])
    write_results_json(tmp_path / "predictions.json", {1: dets, 3: dets.take([1])})
    assert [r["image_id"] for r in stream_results(tmp_path / "predictions.json", chunk=7)] == [1, 1, 3]
    items = [ImageItem(k, tmp_path / f"{k}.jpg", f"{k}.jpg", str(k), k) for k in (1, 2, 3)]
    got = list(stored_detections(tmp_path, items))
    assert [len(d) for _, d in got] == [2, 0, 1]
    np.testing.assert_allclose(got[0][1].boxes, dets.boxes, rtol=0, atol=1e-12)
    assert got[0][1].scores[1] == 1 / 3 and got[2][1].labels.tolist() == [1]
    write_results_json(tmp_path / "predictions.json", {})
    assert [len(d) for _, d in stored_detections(tmp_path, items)] == [0, 0, 0]
