"""scripts/build_mmcv.sh: the wheel cache key, and the cache hit that rebuilds nothing."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_mmcv.sh"


def run(*args, cwd=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.skipif(bool(torch.version.cuda) and shutil.which("nvcc") is not None,
                    reason="a CUDA build would be keyed by GPU architecture, and a miss would build")
def test_cached_wheel_is_found_by_torch_device_and_python_key(tmp_path):
    py = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    key = tmp_path / f"mmcv-2.1.0_torch-{torch.__version__}_cpu_{py}"
    key.mkdir()
    wheel = key / f"mmcv-2.1.0-{py}-{py}-linux_x86_64.whl"
    wheel.write_bytes(b"not a real wheel")
    other = tmp_path / f"mmcv-2.1.0_torch-0.0.0_cpu_{py}"  # another torch: must not be used
    other.mkdir()
    (other / wheel.name).write_bytes(b"")

    # A relative cache dir is resolved against the caller's directory.
    result = run(sys.executable, tmp_path.name, cwd=tmp_path.parent)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(wheel)
    assert "wheel cached" in result.stderr


def test_usage_error_without_arguments():
    result = run()
    assert result.returncode == 2
    assert "usage:" in result.stderr and "PYTHON CACHE_DIR [SDIST]" in result.stderr
