"""afm never deletes what it did not write: the folder-replacement rule, stale
temporaries of a killed run, and nothing left behind on failure (afmcli/io.py)."""

from __future__ import annotations

import pytest

from afmcli.errors import AfmError
from afmcli.io import MARKER, atomic_path, check_output_file, check_replaceable, foreign_files


def _write_folder(path, files: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.mkdir()
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


def test_folder_gets_a_marker_listing_its_files(tmp_path):
    _write_folder(tmp_path / "out", {"a.txt": "1", "sub/b.txt": "2"})
    assert (tmp_path / "out" / MARKER).read_text() == "a.txt\nsub/b.txt\n"
    assert foreign_files(tmp_path / "out") == []


def test_afm_folder_is_replaced_whole(tmp_path):
    _write_folder(tmp_path / "out", {"a.txt": "1", "b.txt": "2"})
    _write_folder(tmp_path / "out", {"c.txt": "3"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "c.txt"]


def test_user_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    with pytest.raises(AfmError) as info:
        _write_folder(out, {"a.txt": "1"})
    assert str(info.value) == (f"{out}: holds notes.md, which afm did not write; afm replaces only its own "
                               "output folders: choose another folder, or move those files away")
    assert [p.name for p in out.iterdir()] == ["notes.md"]
    assert list(tmp_path.iterdir()) == [out]  # no temporary left


def test_user_file_added_to_afm_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    _write_folder(out, {"a.txt": "1"})
    (out / "pred.json").write_text("[]")
    (out / "x.txt").write_text("")
    with pytest.raises(AfmError, match=r"out \(--visdrone-dir\): holds pred.json and 1 more, which afm did not"):
        check_replaceable(out, "--visdrone-dir")
    with pytest.raises(AfmError, match="holds pred.json"):
        _write_folder(out, {"b.txt": "2"})
    assert (out / "pred.json").read_text() == "[]" and (out / "a.txt").is_file()


def test_empty_folder_may_be_replaced(tmp_path):
    (tmp_path / "out").mkdir()
    _write_folder(tmp_path / "out", {"a.txt": "1"})
    assert (tmp_path / "out/a.txt").read_text() == "1"


def test_output_paths_that_are_files_or_folders(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(AfmError, match=r"^.*f: exists and is a file; --plots must be a folder$"):
        check_replaceable(tmp_path / "f", "--plots")
    with pytest.raises(AfmError, match=r"f/sub: cannot write a folder there: .*f is a file, not a folder"):
        check_replaceable(tmp_path / "f" / "sub", "--plots")
    with pytest.raises(AfmError, match=r"is a folder; --json must be a file name"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(AfmError, match=r"f/m.json: cannot write a file there: .*f is a file"):
        check_output_file(tmp_path / "f" / "m.json", "--json")


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / ".out.k3x_9a0b.tmp").mkdir()               # a killed folder write
    (tmp_path / ".out.k3x_9a0b.tmp" / "half.txt").write_text("")
    (tmp_path / ".out.zz00zz00.tmp").write_text("")        # a killed file write
    (tmp_path / ".out.old").mkdir()                         # killed while swapping
    (tmp_path / ".out.backup.tmp").write_text("mine")      # not one of afm's names
    (tmp_path / ".other.k3x_9a0b.tmp").write_text("")      # another output's
    _write_folder(tmp_path / "out", {"a.txt": "1"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.k3x_9a0b.tmp", ".out.backup.tmp", "out"]


def test_failure_leaves_nothing_not_even_parent_folders(tmp_path):
    target = tmp_path / "labels" / "gt_mask_s" / "train"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a.png").write_text("")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_old_result(tmp_path):
    _write_folder(tmp_path / "out", {"a.txt": "good"})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out") as tmp:
            tmp.mkdir()
            raise RuntimeError("boom")
    assert (tmp_path / "out/a.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_is_not_written_over_a_file_nor_a_file_over_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(AfmError, match=r"f: exists and is a file; cannot write a folder there$"):
        _write_folder(tmp_path / "f", {"a.txt": "1"})
    (tmp_path / "d").mkdir()
    with pytest.raises(AfmError, match=r"d: is a folder; cannot write a file there$"):
        with atomic_path(tmp_path / "d") as tmp:
            tmp.write_text("y")
    assert (tmp_path / "f").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_a_shared_folder_lists_and_replaces_only_its_entries(tmp_path):
    from afmcli.errors import ParameterError
    from afmcli.io import SharedFolder

    out = tmp_path / "out"
    shared = SharedFolder(out, "afm test", "out")
    with shared.writing(["a.json", "sub/b.txt"]) as stage:
        stage("a.json").write_text("1")
        stage("sub/b.txt").write_text("2")
    assert (out / MARKER).read_text() == "a.json\nsub/b.txt\n"
    (out / "mine.txt").write_text("keep")
    with shared.writing(["a.json"], drop=["sub/b.txt", "mine.txt"]) as stage:  # an earlier entry it no longer makes
        stage("a.json").write_text("3")
    assert (out / "a.json").read_text() == "3" and not (out / "sub" / "b.txt").exists()
    assert (out / "mine.txt").read_text() == "keep" and (out / MARKER).read_text() == "a.json\n"
    with pytest.raises(ParameterError, match=r"mine.txt: exists and was not written by afm test; move it away or "
                                             r"choose another out$"):
        shared.check(["mine.txt"])


def test_a_failed_shared_write_leaves_the_manifest_and_folders_as_they_were(tmp_path):
    from afmcli.io import SharedFolder

    target = tmp_path / "Datasets" / "labels" / "annotations"
    with pytest.raises(RuntimeError):
        with SharedFolder(target, "afm test", "out").writing(["train_labels.json"]) as stage:
            stage("train_labels.json").write_text("{}")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.mkdir(parents=True)
    (target / MARKER).write_text("val_labels.json\n")
    with pytest.raises(RuntimeError):
        with SharedFolder(target, "afm test", "out").writing(["train_labels.json"]):
            raise RuntimeError("boom")
    assert (target / MARKER).read_text() == "val_labels.json\n" and sorted(p.name for p in target.iterdir()) == [
        MARKER]
