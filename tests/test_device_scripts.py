"""scripts/device/real_bench.sh: what it does on this machine before a device call."""

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device" / "real_bench.sh"


def prepare(checkout: Path, python: str) -> subprocess.CompletedProcess:
    """``real_bench.sh --prepare`` with ``PYTHON=python`` in a checkout of its own (so that it
    cannot touch this one's .realdata/) that has no bench/."""
    (checkout / "scripts" / "device").mkdir(parents=True)
    shutil.copy(SCRIPT, checkout / "scripts" / "device")
    (checkout / ".git" / "info").mkdir(parents=True)
    (checkout / ".git" / "info" / "exclude").write_text("/.realdata/\n")
    return subprocess.run(["bash", "scripts/device/real_bench.sh", "--prepare"], cwd=checkout,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": python},
                          capture_output=True, text=True, timeout=60)


def test_prepare_without_an_interpreter_says_so_and_keeps_the_prepared_data(tmp_path):
    prepared = tmp_path / ".realdata" / "data" / "marker"
    prepared.parent.mkdir(parents=True)
    prepared.write_text("an earlier --prepare")

    result = prepare(tmp_path, str(tmp_path / "no-python"))

    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'no-python'} not found: run 'make install' first (or set PYTHON)"
    assert prepared.read_text() == "an earlier --prepare"


def test_prepare_takes_an_interpreter_named_on_the_path(tmp_path):
    result = prepare(tmp_path, "python3")

    # Past the check: the interpreter ran, and stopped on this checkout's missing bench/.
    assert result.returncode == 2
    assert "run 'make install' first" not in result.stderr
    assert "bench/bench_accuracy.py" in result.stderr
