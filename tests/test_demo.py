"""The demo's dataset step (also used by bench/bench_accuracy.py), its step runner, and what
its terminal shows."""

import json
from pathlib import Path

import pytest

from afmcli.cli import app
from afmcli.engine.demo import last_checkpoint, make_synthetic_split, run_step
from afmcli.errors import AfmError


def test_make_synthetic_split_writes_both_splits_in_visdrone_layout(tmp_path):
    data, times = make_synthetic_split(app, tmp_path, train_images=3, val_images=2, width=160, height=120)

    assert data == tmp_path / "Datasets"
    assert set(times) == {"synth", "convert-visdrone"} and all(t > 0 for t in times.values())
    for split, n in (("train", 3), ("val", 2)):
        coco = json.loads((data / "labels" / "annotations" / f"{split}_labels.json").read_text())
        assert len(coco["images"]) == n
        assert {(im["width"], im["height"]) for im in coco["images"]} == {(160, 120)}
        assert len(list((data / "images" / split).glob("*.jpg"))) == n
        assert len(list((tmp_path / "raw" / f"VisDrone2019-DET-{split}" / "annotations").iterdir())) == n
    # Different seeds: the val images are not copies of the train images.
    train = (data / "images" / "train").glob("*.jpg")
    val = (data / "images" / "val").glob("*.jpg")
    assert {p.read_bytes() for p in train}.isdisjoint(p.read_bytes() for p in val)


def test_run_step_stops_at_a_failing_command_with_its_own_message(tmp_path):
    with pytest.raises(AfmError, match="missing.json: no such annotations folder or json"):
        run_step(app, ["evaluate", "--gt", str(tmp_path / "missing.json"), "--pred", str(tmp_path / "p.json")])


def test_last_checkpoint_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(AfmError, match="training wrote no checkpoint"):
        last_checkpoint(tmp_path)


@pytest.mark.slow
def test_the_demo_terminal_is_quiet(tmp_path):
    """The whole demo (smaller: 4 + 2 images) as a user's terminal shows it: the command lines,
    the training's epoch tables and a summary; mmengine's environment and config dump only in
    the work dir's log; no pycocotools prints, no warning a user cannot act on."""
    import subprocess
    import sys

    code = ("import sys\nimport afmcli.engine.demo as d\n"
            "d.TRAIN_IMAGES, d.VAL_IMAGES, d.IMAGE_W, d.IMAGE_H = 4, 2, 320, 240\n"
            "from afmcli.cli import main\nmain(['demo', '--out', sys.argv[1]])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "demo")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    shown = (proc.stdout + proc.stderr).splitlines()
    assert len(shown) <= 100, "\n".join(shown)
    for noise in ("WARNING", "Warning", "loading annotations", "System environment", "Config:"):
        assert not any(noise in line for line in shown), noise
    assert sum(line.startswith("training: epoch") for line in shown) == 3  # validations at epochs 4, 8, 12
    assert proc.stdout.splitlines()[-1].startswith("afm demo done in ")
    logs = list((tmp_path / "demo" / "work_dir").glob("*/*.log"))
    assert len(logs) == 1 and "System environment" in logs[0].read_text() and "Config:" in logs[0].read_text()
