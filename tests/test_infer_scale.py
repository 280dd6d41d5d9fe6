"""`afm infer` at scale: streaming records, resume, fingerprints, output-folder safety,
workers, ranks on gloo and video sources, with the tiny TOOD on small images."""

import json
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from afmcli.cli import main
from afmcli.errors import AfmError
from afmcli.detections import Detections
from afmcli.inference.distributed import balanced_shards
from afmcli.inference.records import ImageResult, RecordWriter, read_record, scan_records
from afmcli.inference.sources import open_source
from afmcli.inference.state import STATE_DIR
from test_infer_e2e import save_tiny_checkpoint

CONFIG = Path(__file__).parent / "fixtures" / "tiny_tood_128.py"

FAST = ["--slice", "96", "--batch-size", "2", "--max-per-img", "100"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine, 2 threads can be 50x slower (spinning)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    main(["synth", str(root / "synth"), "--split", "val", "--images", "4", "--width", "192", "--height", "144"])
    return root, root / "synth" / "images", save_tiny_checkpoint(root / "tiny.pth")


@pytest.fixture(scope="module")
def reference(setup):
    """One uninterrupted one-process run, with --viz."""
    root, images, ckpt = setup
    out = root / "reference"
    main(["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), "--viz", *FAST])
    return out


def tree(out: Path) -> dict[str, bytes]:
    """Every file afm writes for the user (the state folder left out), by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and STATE_DIR not in p.parts}


def fail_after(monkeypatch, n: int) -> None:
    """Simulate a kill: the process dies as it is about to record image n + 1."""
    real, count = RecordWriter.append, [0]

    def append(self, result):
        if count[0] == n:
            raise RuntimeError("simulated kill")
        count[0] += 1
        real(self, result)

    monkeypatch.setattr(RecordWriter, "append", append)


def test_record_log_keeps_exact_arrays_and_stops_at_a_torn_tail(tmp_path):
    dets = Detections([[1.25, 2.5, 30.125, 40.0], [0, 0, 1e-7, 3]], [0.9, 1 / 3], [4, 7])
    with RecordWriter(tmp_path, rank=0) as writer:
        for image_id in (5, 6, 7):
            writer.append(ImageResult(image_id, (320, 240), 4, dets, Detections.empty(), dets.take([1])))
    log = writer.path
    log.write_bytes(log.read_bytes()[:-3])  # a kill in the middle of the last record
    index = scan_records(tmp_path)
    assert sorted(index) == [5, 6]
    back = read_record(index[6])
    assert back.size == (320, 240) and back.n_tiles == 4 and len(back.full) == 0
    assert back.slices.boxes.tobytes() == dets.boxes.tobytes() and back.fused.scores.tolist() == [1 / 3]


def test_balanced_shards_are_contiguous_and_even_by_weight():
    assert balanced_shards([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2) == [slice(0, 1), slice(1, 11)]
    assert balanced_shards([1, 1, 1, 1], 2) == [slice(0, 2), slice(2, 4)]
    assert balanced_shards([5, 5, 5], 4) == [slice(0, 1), slice(1, 2), slice(2, 2), slice(2, 3)]
    rng = np.random.default_rng(0)
    w = rng.integers(1, 20, size=200)
    parts = balanced_shards(w, 7)
    assert parts[0].start == 0 and parts[-1].stop == 200
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    assert max(abs(w[p].sum() - w.sum() / 7) for p in parts) <= w.max()


def test_fingerprint_names_what_changed(tmp_path):
    from afmcli.engine.train import load_config
    from afmcli.inference.run import InferSettings
    from afmcli.inference.sources import ImageFiles
    from afmcli.inference.state import fingerprint, fingerprint_difference

    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"weights")
    b.write_bytes(b"weights, trained on")
    config = tmp_path / "c.py"
    config.write_text(f"_base_ = {str(CONFIG)!r}\n")
    items = ImageFiles.of(tmp_path, [tmp_path / "x.jpg"])
    base = fingerprint(load_config(config), a, InferSettings(), items, "cpu")
    assert fingerprint(load_config(config), a, InferSettings(), items, "cpu") == base
    assert fingerprint(load_config(CONFIG), a, InferSettings(), items, "cuda:1") == {**base, "settings": {
        **base["settings"], "device": "cuda"}}  # the same config through _base_; the GPU index is not part
    config.write_text(f"_base_ = {str(CONFIG)!r}\nmodel = dict(test_cfg=dict(score_thr=0.05))\n")
    changed = fingerprint(load_config(config), b, InferSettings(iou=0.5), ImageFiles.of(tmp_path, [tmp_path / "y.jpg"]),
                          "cpu")
    assert fingerprint_difference(base, changed) == "config, checkpoint, image list, iou 0.6 -> 0.5"


def test_killed_run_resumes_with_workers_to_the_same_bytes(setup, reference, tmp_path, monkeypatch):
    root, images, ckpt = setup
    out = tmp_path / "pred"
    args = ["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), "--viz", *FAST]
    fail_after(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(args)
    assert not (out / "predictions.json").exists()  # no final file before the end
    assert len(scan_records(out / STATE_DIR / "records")) == 2
    monkeypatch.undo()
    main(args + ["--workers", "2"])
    assert tree(out) == tree(reference)
    assert {"predictions.json", "visdrone/" + sorted(images.iterdir())[0].stem + ".txt"} <= set(tree(out))
    assert not (out / STATE_DIR / "records").exists()  # done: the records are dropped


def test_resume_skips_the_images_done(setup, tmp_path, monkeypatch, capsys):
    root, images, ckpt = setup
    out = tmp_path / "pred"
    args = ["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), *FAST]
    fail_after(monkeypatch, 3)
    with pytest.raises(SystemExit):
        main(args)
    monkeypatch.undo()
    capsys.readouterr()
    main(args)
    table = capsys.readouterr().out
    assert "run now" in table and table.split("run now")[1].split()[1] == "1"
    main(args)  # complete: nothing left to run
    assert capsys.readouterr().out.split("run now")[1].split()[1] == "0"


def test_another_run_in_the_same_out_is_refused_unless_overwrite(setup, tmp_path, capsys):
    root, images, ckpt = setup
    out = tmp_path / "pred"
    main(["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), *FAST])
    (out / "metrics.json").write_text('{"AP": 1}')  # what the README's evaluate step puts there
    (out / "plots").mkdir()
    (out / "plots" / "pr.png").write_bytes(b"png")
    with pytest.raises(SystemExit) as exc:
        main(["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), *FAST, "--slice", "128"])
    assert exc.value.code == 2
    assert (f"afm: error: {out}: holds a run with another slice_size 96 -> 128; rerun its command to resume it, "
            "or add --overwrite to start this one") in capsys.readouterr().err
    main(["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), *FAST, "--no-slices", "--overwrite"])
    assert not (out / "sources" / "slices.json").exists() and (out / "sources" / "full.json").exists()
    assert (out / "metrics.json").read_text() == '{"AP": 1}' and (out / "plots" / "pr.png").exists()


def test_a_wrong_images_folder_never_replaces_good_predictions(setup, tmp_path, capsys):
    root, images, ckpt = setup
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps({"images": [{"id": i, "file_name": p.name}
                                          for i, p in enumerate(sorted(images.iterdir()), 1)]}))
    out = tmp_path / "pred"
    base = ["infer", str(CONFIG), str(ckpt), str(ann), "--out", str(out), "--no-slices"]
    main(base + ["--images", str(images)])
    good = (out / "predictions.json").read_bytes()
    assert json.loads(good)
    (tmp_path / "wrong").mkdir()
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit):
            main(base + ["--images", str(tmp_path / "wrong"), *extra])
    first = sorted(images.iterdir())[0].name
    assert capsys.readouterr().err.strip().splitlines() == [
        f"afm: error: {ann}: none of its 4 image(s) exists (first: {tmp_path / 'wrong' / first}); "
        "check the path or --images"] * 2
    broken = tmp_path / "broken"  # files there, none decodable
    broken.mkdir()
    for p in images.iterdir():
        (broken / p.name).write_bytes(b"not an image")
    with pytest.raises(SystemExit):
        main(base + ["--images", str(broken), "--overwrite"])
    assert "none of the 4 image(s) could be read" in capsys.readouterr().err
    assert (out / "predictions.json").read_bytes() == good


def test_never_replaces_what_afm_did_not_write(setup, tmp_path, capsys):
    root, images, ckpt = setup
    out = tmp_path / "pred"
    (out / "visdrone").mkdir(parents=True)
    (out / "visdrone" / "mine.txt").write_text("hand-made")
    (out / "notes.txt").write_text("keep me")
    first = sorted(images.iterdir())[0]
    with pytest.raises(SystemExit):
        main(["infer", str(CONFIG), str(ckpt), str(first), "--out", str(out), "--no-slices"])
    assert (f"{out / 'visdrone'}: exists and was not written by afm infer; move it away or choose another --out"
            in capsys.readouterr().err)
    (out / "visdrone" / "mine.txt").unlink()
    (out / "visdrone").rmdir()
    main(["infer", str(CONFIG), str(ckpt), str(first), "--out", str(out), "--no-slices"])
    assert (out / "notes.txt").read_text() == "keep me" and (out / "visdrone" / f"{first.stem}.txt").exists()


def test_rerun_retries_only_the_unreadable_images(setup, tmp_path, capsys):
    root, images, ckpt = setup
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(images.iterdir())
    (folder / good[0].name).write_bytes(good[0].read_bytes())
    (folder / good[1].name).write_bytes(b"truncated")
    out = tmp_path / "pred"
    args = ["infer", str(CONFIG), str(ckpt), str(folder), "--out", str(out), *FAST]
    with pytest.raises(SystemExit):
        main(args)
    assert "1 image(s) could not be read" in capsys.readouterr().err
    assert {r["image_id"] for r in json.loads((out / "predictions.json").read_text())} == {1}
    (folder / good[1].name).write_bytes(good[1].read_bytes())  # fixed
    main(args)
    assert capsys.readouterr().out.split("run now")[1].split()[1] == "1"
    assert {r["image_id"] for r in json.loads((out / "predictions.json").read_text())} == {1, 2}


def test_launcher_errors_are_one_line(setup, tmp_path, capsys, monkeypatch):
    root, images, ckpt = setup
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    base = ["infer", str(CONFIG), str(ckpt), str(images), "--out", str(tmp_path / "p")]
    for launcher, message in (
            ("pytorch", "--launcher pytorch: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set; start afm with "
                        "torchrun"),
            ("slurm", "--launcher slurm runs one process per GPU (nccl); on CPUs start the processes with "
                      "torchrun and --launcher pytorch"),
            ("mpi", "--launcher: expected none, pytorch or slurm, got 'mpi'")):
        with pytest.raises(SystemExit):
            main(base + ["--launcher", launcher])
        assert capsys.readouterr().err == f"afm: error: {message}\n"


def write_video(path: Path, frames: int, size=(192, 144)) -> list[np.ndarray]:
    """A small MJPG video of moving squares; returns the frames as OpenCV decodes them."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for k in range(frames):
        img = np.full((size[1], size[0], 3), 90, np.uint8)
        cv2.rectangle(img, (10 + 12 * k, 30), (40 + 12 * k, 60), (20, 200, 240), -1)
        writer.write(img)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = [cap.read()[1] for _ in range(frames)]
    cap.release()
    return decoded


def test_video_frames_are_named_stepped_and_read_without_seeking(setup, tmp_path):
    root, images, ckpt = setup
    videos = tmp_path / "videos"
    videos.mkdir()
    decoded = write_video(videos / "clip.avi", 7)
    write_video(videos / "b.avi", 2)
    source = open_source(videos, frame_step=3)
    items = source.items
    assert [(i.image_id, i.name, i.frame) for i in items] == [
        (1, "b_0000001", 1), (2, "clip_0000001", 1), (3, "clip_0000004", 4), (4, "clip_0000007", 7)]
    # frame 7 first, then 4 (re-reads forward from the start), same pixels
    (_, seventh), (_, fourth) = source.read([items[3], items[2]])
    assert np.array_equal(seventh, decoded[6]) and np.array_equal(fourth, decoded[3])
    with pytest.raises(AfmError, match="frame_step must be >= 1"):
        open_source(videos, frame_step=0)

    out = tmp_path / "pred"
    main(["infer", str(CONFIG), str(ckpt), str(videos / "clip.avi"), "--out", str(out), "--frame-step", "3",
          "--vid", "--slice", "96", "--max-per-img", "50"])
    assert sorted(p.name for p in (out / "visdrone").glob("*.txt")) == [
        "clip_0000001.txt", "clip_0000004.txt", "clip_0000007.txt"]
    vid = np.loadtxt(out / "vid" / "clip.txt", delimiter=",", ndmin=2)
    assert sorted(set(vid[:, 0])) == [1, 4, 7] and set(vid[:, 1]) == {-1} and set(vid[:, 8]) == {-1}
    fused = json.loads((out / "predictions.json").read_text())
    assert len(vid) == len(fused) and {r["image_id"] for r in fused} <= {1, 2, 3}
    frame4 = np.loadtxt(out / "visdrone" / "clip_0000004.txt", delimiter=",", ndmin=2)
    np.testing.assert_array_equal(vid[vid[:, 0] == 4][:, 2:8], frame4[:, :6])


def test_vid_and_frame_step_need_a_video(setup, tmp_path, capsys):
    root, images, ckpt = setup
    with pytest.raises(SystemExit):
        main(["infer", str(CONFIG), str(ckpt), str(images), "--out", str(tmp_path / "p"), "--frame-step", "2"])
    assert "--frame-step applies to video sources" in capsys.readouterr().err


# --- two ranks on gloo (torch.multiprocessing, one process per rank) ---

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, args: list[str], kill_rank1_after: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch

    torch.set_num_threads(1)  # as the one-process reference
    if kill_rank1_after is not None and rank == 1:
        fail_after(pytest.MonkeyPatch(), kill_rank1_after)
    main(args + ["--launcher", "pytorch"])


def run_ranks(args: list[str], world: int = 2, kill_rank1_after: int | None = None) -> None:
    import torch.multiprocessing as mp

    # fork: the ranks start with afmcli and mmdet already imported (spawn re-imports them, slowly)
    mp.start_processes(_rank_main, args=(world, _free_port(), args, kill_rank1_after), nprocs=world,
                       start_method="fork")


def test_two_gloo_ranks_equal_one_process_and_a_killed_rank_resumes(setup, reference, tmp_path):
    root, images, ckpt = setup
    out = tmp_path / "pred"
    args = ["infer", str(CONFIG), str(ckpt), str(images), "--out", str(out), "--viz", *FAST]
    with pytest.raises(Exception):
        run_ranks(args, kill_rank1_after=1)
    records = out / STATE_DIR / "records"
    assert not (out / "predictions.json").exists()
    assert {p.name[:8] for p in records.glob("*.rec")} == {"rank0000", "rank0001"}
    assert 1 <= len(scan_records(records)) <= 3
    run_ranks(args)
    assert tree(out) == tree(reference)
