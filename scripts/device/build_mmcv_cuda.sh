#!/usr/bin/env bash
# Run ON THE GPU MACHINE: mmcv 2.1.0 with CUDA ops for the GPU present (sm_90 on H100/H200),
# built from .whl/mmcv-2.1.0.tar.gz by scripts/build_mmcv.sh; the wheel is copied to $OUT
# and to .whl/ (git-ignored), so that later runs carry it instead of rebuilding.
# No patch is needed for CUDA 13: mmcv 2.1.0 compiled unchanged with nvcc 13.0 and
# torch 2.11.0+cu130 for sm_90 (checked off the GPU machine, see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .whl/mmcv-2.1.0-*.whl >/dev/null 2>&1; then echo "mmcv wheel already built: $(ls .whl/mmcv-2.1.0-*.whl)"; exit 0; fi
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { echo "nvcc not found: cannot build CUDA ops" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/buildtools .whl/build/*.whl 2>/dev/null || true
export PYTHONPATH=/tmp/buildtools${PYTHONPATH:+:$PYTHONPATH}
# build_mmcv.sh logs the cores and the build time ("built in N s") to mmcv_build.log.
wheel=$(bash scripts/build_mmcv.sh python3 /tmp/mmcv-wheels .whl/mmcv-2.1.0.tar.gz 2> >(tee "$OUT/mmcv_build.log" >&2) | tail -1)
cp "$wheel" "$OUT"/ && cp "$wheel" .whl/
