#!/usr/bin/env bash
# Build (or find in the cache) an mmcv wheel with compiled ops for the torch of a python.
#   scripts/build_mmcv.sh PYTHON CACHE_DIR [SDIST]
# The wheel goes to CACHE_DIR/<key>/, keyed by mmcv, torch (with its local tag), CPU or
# CUDA with the GPU architectures, and python; the last line printed is the wheel's path.
# PYTHON must already hold torch, setuptools<82, wheel and ninja. SDIST is mmcv's source
# archive; without it the pinned version is downloaded (that needs the network).
# Used by setup_env.sh and by device/build_mmcv_cuda.sh.
#
# CUDA ops are built when torch is a CUDA build and nvcc is found, for TORCH_CUDA_ARCH_LIST
# if set, else for the GPU present, else for torch's default list (slow: set it).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 PYTHON CACHE_DIR [SDIST]" >&2; exit 2; }
PY=$1; CACHE=$2; SDIST=${3:-}
# Absolute paths: the build runs inside the unpacked source. (dirname, not realpath: a
# venv's python is a symlink that must stay one.)
abs() { case $1 in /*) echo "$1";; */*) echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")";; *) echo "$1";; esac; }
mkdir -p "$CACHE"; CACHE=$(cd "$CACHE" && pwd)
PY=$(abs "$PY"); [ -z "$SDIST" ] || SDIST=$(abs "$SDIST")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MMCV_PIN=$(grep -E '^mmcv==' "$ROOT/requirements/pins.txt")
say() { printf '\033[1m[mmcv]\033[0m %s\n' "$*" >&2; }

read -r TORCH_V TORCH_CUDA GPU_ARCH PY_TAG < <("$PY" -c "
import sys, torch
arch = '%d.%d' % torch.cuda.get_device_capability() if torch.cuda.is_available() else 'default'
print(torch.__version__, torch.version.cuda or 'none', arch, f'cp{sys.version_info[0]}{sys.version_info[1]}')")
if [ "$TORCH_CUDA" != none ] && command -v nvcc >/dev/null; then
  export FORCE_CUDA=1
  [ -n "${TORCH_CUDA_ARCH_LIST:-}" ] || [ "$GPU_ARCH" = default ] || export TORCH_CUDA_ARCH_LIST=$GPU_ARCH
  archs=${TORCH_CUDA_ARCH_LIST:-default}
  DEVICE="cu${TORCH_CUDA/./}-sm$(echo "$archs" | tr -d '.' | tr ' ;' '_')"
else
  [ "$TORCH_CUDA" = none ] || say "warning: torch is a CUDA $TORCH_CUDA build but nvcc is not on the PATH: CPU ops only"
  export FORCE_CUDA=0
  DEVICE=cpu
fi
WHEEL_DIR="$CACHE/${MMCV_PIN/==/-}_torch-${TORCH_V}_${DEVICE}_${PY_TAG}"
if ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  say "wheel cached: $WHEEL_DIR"
  ls "$WHEEL_DIR"/mmcv-*.whl | head -1
  exit 0
fi

if [ "$FORCE_CUDA" = 1 ]; then
  # torch's CUDA headers include cuBLAS, cuSPARSE and cuSOLVER's. Where the toolkit lacks
  # them (a compiler-only install), use the copies that torch's pip wheels brought.
  cuda_home=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
  if [ ! -e "$cuda_home/include/cublas_v2.h" ]; then
    inc=$("$PY" -c "
import glob, os, site
hits = [os.path.dirname(p) for d in site.getsitepackages()
        for p in glob.glob(os.path.join(d, 'nvidia', '*', 'include', 'cublas_v2.h'))]
print(hits[0] if hits else '')")
    [ -z "$inc" ] || export CPATH="$inc${CPATH:+:$CPATH}"
  fi
  say "building $MMCV_PIN with CUDA $TORCH_CUDA ops (archs: $archs) on $(nproc) cores"
else
  say "building $MMCV_PIN with CPU ops; takes 4-11 minutes on 2 cores"
fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if [ -z "$SDIST" ]; then
  # --no-build-isolation: reading mmcv's metadata imports torch.
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --no-build-isolation -d "$work" "$MMCV_PIN"
  SDIST=$(ls "$work"/mmcv-*.tar.gz)
fi
tar xzf "$SDIST" -C "$work"
start=$(date +%s)
# --no-build-isolation: with isolation pip silently builds mmcv without ops.
# -g0 drops debug info: the CPU wheel shrinks from 32 MB to 1.4 MB.
( cd "$work"/mmcv-*/ && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    CFLAGS='-DNDEBUG -fwrapv -O3 -Wall -g0' \
    "$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps \
    -w "$work/dist" . ) >&2
mkdir -p "$WHEEL_DIR" && mv "$work"/dist/mmcv-*.whl "$WHEEL_DIR"/
say "built in $(( $(date +%s) - start )) s: $WHEEL_DIR"
ls "$WHEEL_DIR"/mmcv-*.whl | head -1
