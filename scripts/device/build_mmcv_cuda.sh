#!/usr/bin/env bash
# Run ON THE GPU MACHINE: build mmcv 2.1.0 with CUDA ops for the GPU present, wheel to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .whl/mmcv-2.1.0-*.whl >/dev/null 2>&1; then echo "mmcv wheel already built: $(ls .whl/mmcv-2.1.0-*.whl)"; exit 0; fi
arch=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
work=$(mktemp -d); tar xzf .whl/mmcv-2.1.0.tar.gz -C "$work"; src="$work/mmcv-2.1.0"
# Smallest patches for torch 2.11 / CUDA 13 (documented in docs/benchmarks.md once measured):
# CUDA 13 dropped architectures below sm_75, so only the present one is built.
start=$(date +%s)
( cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=$(nproc) \
    CFLAGS='-DNDEBUG -fwrapv -O3 -Wall -g0' \
    python3 -m pip wheel --no-build-isolation --no-deps -w "$OUT" . ) 2>&1 | tee "$OUT/mmcv_build.log" | tail -20
echo "mmcv CUDA build (sm_${arch/./}) took $(( $(date +%s) - start )) s" | tee -a "$OUT/mmcv_build.log"
cp "$OUT"/mmcv-2.1.0-*.whl .whl/ 2>/dev/null || true
