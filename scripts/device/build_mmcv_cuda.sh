#!/usr/bin/env bash
# Run HERE (CPU machine, network): mmcv 2.1.0 with CUDA ops for the GPU machine (python 3.12,
# PyPI's torch 2.11.0 = CUDA 13.0, H100/H200 = sm_90), built by scripts/build_mmcv.sh in a
# python 3.12 venv, and copied into .whl/ for gpu_suite.sh. About 25 minutes on 2 cores.
#   PY312=/path/to/python3.12 TORCH_SPEC=torch==2.11.0 bash scripts/device/build_mmcv_cuda.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python3.12}
VENV=${VENV312:-/tmp/afm-py312-cuda}
TORCH_SPEC=${TORCH_SPEC:-torch==2.11.0}
export PATH=${CUDA_HOME:-/usr/local/cuda}/bin:$PATH TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
command -v nvcc >/dev/null || { echo "nvcc not found (set CUDA_HOME): cannot build CUDA ops" >&2; exit 2; }
pin() { grep -E "^$1==" requirements/pins.txt | head -1; }
[ -x "$VENV/bin/python" ] || "$PY312" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $TORCH_SPEC "$(pin setuptools)" \
  "$(pin wheel)" "$(pin ninja)" "$(pin numpy)"
wheel=$(bash scripts/build_mmcv.sh "$VENV/bin/python" "${AFM_WHEEL_CACHE:-$HOME/.cache/afmcli/wheels}" | tail -1)
# The wheel's ops must load with that torch (no GPU needed). The extension is loaded by
# itself: importing mmcv would need mmengine and cv2, which this build venv does not have.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$wheel"
"$VENV/bin/python" - <<'EOF'
import glob, importlib.util, os, sysconfig
import torch  # noqa: F401  (the extension links against it)
so = glob.glob(os.path.join(sysconfig.get_paths()['purelib'], 'mmcv', '_ext*.so'))[0]
spec = importlib.util.spec_from_file_location('mmcv._ext', so)
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)
print('mmcv._ext loads:', len([n for n in dir(ext) if not n.startswith('_')]), 'ops')
EOF
mkdir -p .whl && cp "$wheel" .whl/
ls -la "$wheel"
