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
MMCV_VERSION=$(pin mmcv); MMCV_VERSION=${MMCV_VERSION#mmcv==}
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
  torch_changed=1
fi
"${PIP[@]}" install -c "$CONSTRAINTS" numpy setuptools wheel ninja

# mmcv with compiled ops: built once per mmcv, torch, CPU/CUDA (and GPU arch) and python,
# then installed from the wheel cache.
WHEEL=$(bash scripts/build_mmcv.sh "$PY" "$CACHE" | tail -1)
if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("mmcv"))' 2>/dev/null)" != "$MMCV_VERSION" ]; then
  "${PIP[@]}" install -c "$CONSTRAINTS" "$WHEEL"
elif [ -n "${torch_changed:-}" ]; then
  # Same mmcv version, but its ops were compiled against the torch just replaced.
  "${PIP[@]}" install --force-reinstall --no-deps "$WHEEL"
fi
say "installing mmengine, mmdet and afmcli (editable, dev extras)"
"${PIP[@]}" install -c "$CONSTRAINTS" -e ".[dev]"
"$PY" -m afmcli.env_check
