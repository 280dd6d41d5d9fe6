#!/usr/bin/env bash
# Run ON THE GPU MACHINE after build_mmcv_cuda.sh: tests and benchmarks, results to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
ls .whl/mmcv-2.1.0-*.whl >/dev/null 2>&1 || { echo "no mmcv wheel in .whl/: run build_mmcv_cuda.sh first" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -m afmcli env | tee "$OUT/env.txt"
# The whole suite on python 3.12 / torch 2.11, then the GPU-marked tests (CARAFE parity).
python3 -m pytest -n 8 -q tests 2>&1 | tee "$OUT/tests.log" | tail -5
python3 -m pytest -m gpu -v tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -8
for amp in "" --amp; do
  python3 bench/bench_train.py --device cuda --size 1333x800 --batch 4 --iters 20 --warmup 5 --threads 16 $amp 2>&1 \
    | tee "$OUT/bench_train${amp:+_amp}.log" | tail -12
done
python3 bench/bench_infer.py --device cuda:0 --val-images 16 --batch-sizes 1 8 32 --workers 4 2>&1 | tee "$OUT/bench_infer.log" | tail -15
