"""scripts/device/real_bench.sh: what it does on this machine before a device call."""

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device" / "real_bench.sh"


def test_prepare_without_an_interpreter_says_so_and_keeps_the_prepared_data(tmp_path):
    # A checkout of its own, so that the run cannot touch this one's .realdata/.
    (tmp_path / "scripts" / "device").mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / "scripts" / "device")
    (tmp_path / ".git" / "info").mkdir(parents=True)
    (tmp_path / ".git" / "info" / "exclude").write_text("/.realdata/\n")
    prepared = tmp_path / ".realdata" / "data" / "marker"
    prepared.parent.mkdir(parents=True)
    prepared.write_text("an earlier --prepare")

    result = subprocess.run(["bash", "scripts/device/real_bench.sh", "--prepare"], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "no-python")},
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'no-python'} not found: run 'make install' first (or set PYTHON)"
    assert prepared.read_text() == "an earlier --prepare"
