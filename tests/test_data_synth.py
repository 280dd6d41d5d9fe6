"""`afm synth`: deterministic, VisDrone-like, learnable synthetic data."""

import hashlib

import imagesize
import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.synth import CLASS_STYLES, VISDRONE_SIZES, synth_image, write_synth_split
from afmcli.data.visdrone_format import read_visdrone_file


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_byte_identical_for_a_seed_whatever_the_workers(tmp_path):
    write_synth_split(tmp_path / "a", "train", 3, seed=5, width=320, height=240, workers=1)
    write_synth_split(tmp_path / "b", "train", 3, seed=5, width=320, height=240, workers=2)
    write_synth_split(tmp_path / "c", "train", 3, seed=6, width=320, height=240, workers=2)
    write_synth_split(tmp_path / "d", "val", 3, seed=5, width=320, height=240, workers=2)
    a = _digest(tmp_path / "a")
    assert len(a) == 7 and ".afm-written" in a and a == _digest(tmp_path / "b")
    assert a != _digest(tmp_path / "c") and a != _digest(tmp_path / "d")


def test_cli_layout_and_sizes(tmp_path, capsys):
    main(["synth", str(tmp_path / "s"), "--images", "2", "--seed", "1", "--width", "300", "--height", "200"])
    assert "objects" in capsys.readouterr().out
    images = sorted((tmp_path / "s/images").glob("*.jpg"))
    assert [p.stem for p in images] == [p.stem for p in sorted((tmp_path / "s/annotations").glob("*.txt"))]
    assert all(imagesize.get(str(p)) == (300, 200) for p in images)


def test_default_sizes_are_visdrone_sizes():
    for i in range(4):
        img, _ = synth_image(0, "train", i)
        assert (img.shape[1], img.shape[0]) in VISDRONE_SIZES


def test_width_without_height_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path / "s"), "--width", "300"])
    assert exc.value.code == 2 and "--width and --height go together" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_statistics_like_visdrone():
    """Mostly small and dense (first 50 real train images: 66% of boxes under 32x32, 95% under
    96x96, 67 boxes per image); every class and the special rows occur."""
    rows = [synth_image(0, "train", i)[1] for i in range(20)]
    allr = np.concatenate(rows)
    obj = allr[(allr[:, 5] > 0) & (allr[:, 5] < 11)]
    area = obj[:, 2] * obj[:, 3]
    assert 0.55 < np.mean(area < 32 * 32) < 0.9 and np.mean(area < 96 * 96) > 0.95
    assert 30 < len(obj) / 20 < 120
    assert set(obj[:, 5].astype(int)) == set(CLASS_STYLES)
    assert (obj[:, 4] == 0).any() and (allr[:, 5] == 0).any() and (allr[:, 5] == 11).any()
    assert (obj[:, 6] == 1).any() and (obj[:, 7] > 0).any()  # truncation, occlusion


def test_classes_look_different():
    """The mean colour at box centres differs between every pair of classes (learnable)."""
    colours = {c: [] for c in CLASS_STYLES}
    for i in range(10):
        img, rows = synth_image(1, "train", i)
        for x, y, w, h, score, cat, *_ in rows:
            if 0 < cat < 11 and score == 1 and w >= 6 and h >= 6:
                cy = int(y + h / 2)
                ring = img[cy - 1:cy + 2, int(x + w / 2 - w / 4 - 1)].reshape(-1, 3)
                colours[int(cat)].append(ring.mean(0))
    means = {c: np.median(v, axis=0) for c, v in colours.items() if v}
    assert len(means) == 10
    cats = sorted(means)
    gaps = [np.abs(means[a] - means[b]).max() for i, a in enumerate(cats) for b in cats[i + 1:]]
    assert min(gaps) > 30


def test_labels_parse_and_stay_near_the_image(tmp_path):
    write_synth_split(tmp_path / "s", "train", 2, seed=2, workers=1)
    for txt in (tmp_path / "s/annotations").glob("*.txt"):
        rows = read_visdrone_file(txt)
        w, h = imagesize.get(str(tmp_path / "s/images" / f"{txt.stem}.jpg"))
        assert (rows[:, 0] >= 0).all() and (rows[:, 1] >= 0).all()
        assert (rows[:, 0] + rows[:, 2] <= w + 2).all() and (rows[:, 1] + rows[:, 3] <= h + 2).all()
