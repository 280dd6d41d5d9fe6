#!/usr/bin/env bash
# One-command setup of the OpenMMLab stack in .venv (see README "Setup").
# Idempotent: a second run finds everything installed and the mmcv wheel cached.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=requirements/pins.txt
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
pin() { grep -E "^$1==" "$PINS" | head -1; }
TORCH_SPEC=${TORCH_SPEC:-$(pin torch)}
MMCV_PIN=$(pin mmcv)
MMCV_VERSION=${MMCV_PIN#mmcv==}
CACHE=${AFM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/afmcli/wheels}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
# Torch's pin is left out of the constraints so that TORCH_SPEC can replace it.
CONSTRAINTS=$(mktemp); trap 'rm -f "$CONSTRAINTS"' EXIT
grep -vE '^(torch|mmcv)==' "$PINS" > "$CONSTRAINTS"

"$PY" -c "import torch" 2>/dev/null && installed_torch=$("$PY" -c "import torch; print(torch.__version__)") || installed_torch=
want=${TORCH_SPEC#torch==}
if [ -z "$installed_torch" ] || { [[ "$TORCH_SPEC" == torch==* ]] && [ "${installed_torch%%+*}" != "${want%%+*}" ]; }; then
  say "installing $TORCH_SPEC"
  "${PIP[@]}" install $TORCH_SPEC
fi
"${PIP[@]}" install -c "$CONSTRAINTS" numpy setuptools wheel ninja

# The cache key: mmcv, torch (with its local tag), CPU or CUDA, python.
read -r TORCH_V TORCH_CUDA PY_TAG < <("$PY" -c "import sys, torch; print(torch.__version__, torch.version.cuda or 'none', f'cp{sys.version_info[0]}{sys.version_info[1]}')")
if [ "$TORCH_CUDA" != none ] && command -v nvcc >/dev/null; then DEVICE=cu${TORCH_CUDA/./}; export FORCE_CUDA=1; else DEVICE=cpu; export FORCE_CUDA=0; fi
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_V}_${DEVICE}_${PY_TAG}"
WHEEL_DIR="$CACHE/$KEY"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  say "building mmcv $MMCV_VERSION with compiled ops ($DEVICE); takes 4-11 minutes on 2 cores"
  tmp=$(mktemp -d)
  # --no-build-isolation: with isolation pip silently builds mmcv without ops.
  # -g0 drops debug info: the wheel shrinks from 32 MB to 1.4 MB.
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS='-DNDEBUG -fwrapv -O3 -Wall -g0' \
    "${PIP[@]}" wheel --no-build-isolation --no-deps --no-binary mmcv -w "$tmp" "$MMCV_PIN"
  mkdir -p "$WHEEL_DIR" && mv "$tmp"/mmcv-*.whl "$WHEEL_DIR"/ && rm -rf "$tmp"
else
  say "mmcv wheel cached: $WHEEL_DIR"
fi
if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("mmcv"))' 2>/dev/null)" != "$MMCV_VERSION" ]; then
  "${PIP[@]}" install -c "$CONSTRAINTS" "$WHEEL_DIR"/mmcv-*.whl
fi
say "installing mmengine, mmdet and afmcli (editable, dev extras)"
"${PIP[@]}" install -c "$CONSTRAINTS" -e ".[dev]"
"$PY" -m afmcli.env_check
