#!/usr/bin/env bash
# Run ON THE GPU MACHINE after build_mmcv_cuda.sh: GPU tests and benchmarks, results to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl "$OUT"/mmcv-*.whl 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -m afmcli env | tee "$OUT/env.txt"
python3 -m pytest -m gpu -q tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -5
python3 bench/bench_train.py --device cuda --size 1333x800 --batch 4 --threads 16 2>&1 | tee "$OUT/bench_train_fp32.log" | tail -15
python3 bench/bench_train.py --device cuda --size 1333x800 --batch 4 --threads 16 --amp 2>&1 | tee "$OUT/bench_train_amp.log" | tail -15
python3 bench/bench_infer.py --device cuda:0 --val-images 16 --size 2000x1500 --slice 640 2>&1 | tee "$OUT/bench_infer.log" | tail -15
