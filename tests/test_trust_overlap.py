"""Trust round 3 (issue 39): two runs into one place (afmcli.io.output_lock), the manifest,
write errors that name the output and the reason, why an image could not be read, the
many-tiles notice, and `afm` alone."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from afmcli.cli import app, main
from afmcli.errors import AfmError
from afmcli.io import MARKER, SharedFolder, atomic_path, output_lock
from test_bad_inputs import error, run, snapshot, split
from test_infer_e2e import save_tiny_checkpoint
from test_infer_scale import one_thread  # noqa: F401  (autouse: one torch thread for these tests too)

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = Path(__file__).parent / "fixtures" / "tiny_tood_128.py"
FAST = ["--slice", "256", "--batch-size", "2", "--max-per-img", "100"]  # no many-tiles notice


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlap")
    main(["synth", str(root / "synth"), "--split", "val", "--images", "3", "--width", "192", "--height", "144"])
    return root / "synth" / "images", save_tiny_checkpoint(root / "tiny.pth", TINY_CONFIG)


# --- the lock ---------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    out = tmp_path / "new" / "out"
    with output_lock(out, "afm infer", "out"):
        with pytest.raises(AfmError) as info:
            with output_lock(out, "afm convert-visdrone"):
                pass
        assert str(info.value) == (f"{out}: afm infer (pid {os.getpid()}) is writing there now; wait for it "
                                   "to end, or choose another output")
    # Released: the lock file and the folder made for it are gone; the next run takes it.
    assert list(tmp_path.iterdir()) == []
    with output_lock(out, "afm infer"):
        pass


def test_a_killed_holder_releases_its_lock(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom afmcli.io import output_lock\n"
                               f"with output_lock({str(out)!r}, 'afm train'):\n"
                               "    print('held', flush=True)\n    time.sleep(600)\n"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(AfmError, match=rf"afm train \(pid {holder.pid}\) is writing there now"):
            with output_lock(out, "afm infer"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / ".out.afm-lock").exists()  # left by the kill: taken over, then removed
    with output_lock(out, "afm infer"):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["fuse", "evaluate", "make-masks", "train", "track"])
def test_every_writing_command_takes_the_lock(tmp_path, capsys, command):
    """Each command is refused while another run holds its output (held here, in this process)."""
    from afmcli.engine.demo import make_synthetic_split

    from test_bad_inputs import IMAGES, det, gt_json, results_json

    gt = gt_json(tmp_path / "gt.json", IMAGES[:1])
    pred = results_json(tmp_path / "p.json", [det(1, [1, 2, 3, 4])])
    if command in ("make-masks", "train"):
        make_synthetic_split(app, tmp_path, train_images=1, val_images=1, width=64, height=64,
                                       quiet=True)
    held, option, argv = {
        "fuse": (tmp_path / "f.json", "--out", ["fuse", pred, "--out", tmp_path / "f.json"]),
        "evaluate": (tmp_path / "m.json", "--json", ["evaluate", "--gt", gt, "--pred", pred, "--json",
                                                     tmp_path / "m.json"]),
        "make-masks": (tmp_path / "Datasets", "OUT", ["make-masks", tmp_path / "Datasets"]),
        "train": (tmp_path / "wd", "--work-dir", ["train", REPO / "configs" / "AFM" / "tood_tiny_synth.py",
                                                  "--work-dir", tmp_path / "wd", "--data-root", tmp_path / "Datasets"]),
        "track": (tmp_path / "tracks", "--out", ["track", TINY_CONFIG, tmp_path / "model.pth", tmp_path / "video.mp4",
                                                 "--out", tmp_path / "tracks"]),
    }[command]
    with output_lock(held, "afm test"):
        assert error(capsys, *argv) == (f"{held}: afm test (pid {os.getpid()}) is writing there now; wait for it "
                                        f"to end, or choose another {option}")
    assert not any(p.name.endswith(".afm-lock") for p in tmp_path.rglob("*"))


def test_the_shared_manifest_is_never_empty(tmp_path):
    folder = SharedFolder(tmp_path / "out", "afm test", "out")
    with folder.writing(["a.json"]) as stage:
        stage("a.json").write_text("1")
    assert (tmp_path / "out" / MARKER).read_text() == "a.json\n"
    with folder.writing(["b.json"], drop=["a.json"]) as stage:
        stage("b.json").write_text("2")
    folder._list(set())  # nothing left to list: no manifest rather than an empty one
    assert not (tmp_path / "out" / MARKER).exists()


def _started_together(argvs: list[list[str]], patch: str, go: Path) -> list[subprocess.Popen]:
    """Start `afm argv` for each of ``argvs`` at once, each with ``patch`` (module.function,
    run once the command holds its output) waiting for the file ``go``: so whichever takes the
    output first is still at work when the other asks for it."""
    module, function = patch.rsplit(".", 1)
    code = (f"import os, sys, time\nimport {module} as m\ninner = m.{function}\n"
            f"def waiting(*a, **k):\n    while not os.path.exists({str(go)!r}):\n        time.sleep(0.05)\n"
            f"    return inner(*a, **k)\nm.{function} = waiting\n"
            "from afmcli.cli import main\nmain(sys.argv[1:])\n")
    return [subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=REPO) for argv in argvs]


def _one_refused(procs: list[subprocess.Popen], go: Path, out: Path, command: str, option: str) -> str:
    """Wait for the refused one, let the other finish; check the line; the other's stderr."""
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = next(p for p in procs if p.poll() is not None)
    other = next(p for p in procs if p is not refused)
    go.write_text("")
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert err == (f"afm: error: {out}: {command} (pid {other.pid}) is writing there now; wait for it to end, "
                   f"or choose another {option}\n")
    _, other_err = other.communicate(timeout=300)
    assert other.returncode == 0, other_err
    return other_err


def test_two_converts_into_one_datasets_root(tmp_path, capsys):
    src = split(tmp_path)
    root, go = tmp_path / "Datasets", tmp_path / "go"
    argv = ["convert-visdrone", str(src), str(root)]
    _one_refused(_started_together([argv, argv], "afmcli.data.convert.convert_split", go), go, root,
                 "afm convert-visdrone", "OUT")
    ann = root / "labels" / "annotations"
    assert (ann / MARKER).read_text() == "train_labels.json\n"
    assert len(json.loads((ann / "train_labels.json").read_text())["images"]) == 2
    assert not any(p.name.endswith(".afm-lock") for p in tmp_path.rglob("*"))
    assert run(capsys, *argv)[0] == 0  # and the next run replaces it as its own


@pytest.mark.slow
def test_two_infers_into_one_folder(setup, tmp_path, capsys):
    images, ckpt = setup
    out, go = tmp_path / "pred", tmp_path / "go"
    argv = ["infer", str(TINY_CONFIG), str(ckpt), str(images), "--out", str(out), *FAST]
    _one_refused(_started_together([argv, argv], "afmcli.inference.run.make_plan", go), go, out,
                 "afm infer", "--out")
    listed = (out / MARKER).read_text().split()
    assert "predictions.json" in listed and "visdrone" in listed
    assert {r["image_id"] for r in json.loads((out / "predictions.json").read_text())} <= {1, 2, 3}
    assert run(capsys, *argv, "--overwrite")[0] == 0


# --- write errors: the output and the reason ---------------------------------------------------------

def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_output(tmp_path):
    with pytest.raises(AfmError) as info:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("[")
            _disk_full()
    assert str(info.value) == f"{tmp_path / 'a.json'}: cannot write (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_an_input_is_not_blamed_on_the_output(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "a.json"):
            open(tmp_path / "missing-input.txt")


def test_convert_slice_on_a_full_disk(tmp_path, capsys, monkeypatch):
    import afmcli.data.convert as convert

    monkeypatch.setattr(convert, "save_image", _disk_full)  # the workers are forked: they see it too
    src = split(tmp_path)
    before = snapshot(tmp_path)
    assert error(capsys, "convert-visdrone", src, tmp_path / "D", "--slice", "32", "--workers", "1") == (
        f"{tmp_path / 'D' / 'images' / 'train_sliced'}: cannot write (No space left on device)")
    assert snapshot(tmp_path) == before


def test_infer_on_a_full_disk(setup, tmp_path, capsys, monkeypatch):
    from afmcli.inference.records import RecordWriter

    images, ckpt = setup
    monkeypatch.setattr(RecordWriter, "append", _disk_full)
    out = tmp_path / "pred"
    assert error(capsys, "infer", TINY_CONFIG, ckpt, images, "--out", out, *FAST) == (
        f"{out}: cannot write (No space left on device)")


# --- unreadable images: which, and why --------------------------------------------------------------

def test_infer_says_why_each_image_could_not_be_read(setup, tmp_path, capsys):
    images, ckpt = setup
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.jpg").write_text("not an image\n")
    out = tmp_path / "pred"
    assert error(capsys, "infer", TINY_CONFIG, ckpt, folder, "--out", out, *FAST) == (
        f"none of the 2 image(s) could be read ({folder / 'a.jpg'}: empty file, not an image; "
        f"{folder / 'b.jpg'}: not a readable image (corrupt or unsupported format)); nothing in {out} was replaced")
    good = sorted(images.iterdir())[0]
    (folder / good.name).write_bytes(good.read_bytes())
    code, stdout, err = run(capsys, "infer", TINY_CONFIG, ckpt, folder, "--out", out, *FAST, "--overwrite")
    assert code == 2 and f"unreadable image: {folder / 'a.jpg'}: empty file, not an image" in stdout
    assert f"afm: error: 2 image(s) could not be read (first: {folder / 'a.jpg'}: empty file" in err


def test_an_image_without_a_record_is_not_called_unreadable(tmp_path):
    """Only images whose read failed are unreadable: a record lost to something else
    (another process wiping the state) is said as such."""
    from afmcli.inference.assemble import assemble
    from afmcli.inference.sources import open_source
    from afmcli.inference.state import RunState

    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    source = open_source(tmp_path / "a.png")
    state = RunState(tmp_path / "out")
    with pytest.raises(AfmError) as info:
        assemble(state, source.items, None, {})
    assert str(info.value) == (f"{state.records}: no result for 1 image(s) that were run (first: {tmp_path / 'a.png'}); "
                               f"something else changed {state.dir} meanwhile: rerun the command")


# --- many tiles -------------------------------------------------------------------------------------

def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that says it is width x height and holds no pixels (a size read from its header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                     + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    return path


def test_a_huge_image_is_announced_with_the_option_that_helps(setup, tmp_path, capsys):
    _, ckpt = setup
    huge = _png_header(tmp_path / "huge.png", 12000, 9000)
    code, _, err = run(capsys, "infer", TINY_CONFIG, ckpt, huge, "--out", tmp_path / "pred")
    # step 640 - 160 = 480 px: 25 columns x 19 rows
    assert code == 2 and ("afm: warning: --slice 640 --overlap 0.25 makes 475 tiles for a 12000x9000 image; "
                          "a larger --slice makes fewer") in " ".join(err.split())


def test_convert_advises_a_larger_slice_when_the_overlap_is_usual(tmp_path, capsys):
    src = split(tmp_path, stems=("a",), size=(96, 80))
    code, _, err = run(capsys, "convert-visdrone", src, tmp_path / "D", "--slice", "4", "--overlap", "0.25")
    # step 4 - 1 = 3 px: 32 columns x 27 rows
    assert code == 0 and ("makes 864 tiles for a 96x80 image; a larger --slice makes fewer"
                          in " ".join(err.split()))


# --- the command line -------------------------------------------------------------------------------

def test_afm_alone_shows_the_help_without_an_empty_error():
    proc = subprocess.run([sys.executable, "-m", "afmcli"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "Usage: afm [OPTIONS] COMMAND [ARGS]..." in proc.stdout and "convert-visdrone" in proc.stdout
    assert proc.stderr == ""
