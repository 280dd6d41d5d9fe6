#!/usr/bin/env bash
# Run ON THE GPU MACHINE, as one device call of about 9 minutes: install the carried wheels
# (.whl/, with the CUDA mmcv from build_mmcv_cuda.sh), then each check time-boxed, in order of
# importance; every log and a summary (step, exit code, seconds) land in $OUT.
#   run(command="bash scripts/device/gpu_suite.sh", carry=[".whl"], timeout_s=560)
# Dry run here, on CPU with tiny sizes (checks the script, the installs and the imports):
#   DRY=1 PYTHON=/tmp/afm-py312-cuda/bin/python bash scripts/device/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/afm_gpu_out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-510}  # seconds for all steps; each gets what is left, up to its own limit
start=$(date +%s)
if [ -n "${DRY:-}" ]; then
  DEV=cpu; SIZE=320x256; BATCH=1; ITERS=1; WARM=1; VAL=2; BS="1 2"; TRAIN_ITERS=4; IMG=640x400
else
  DEV=cuda; SIZE=1333x800; BATCH=4; ITERS=20; WARM=5; VAL=16; BS="1 8 32"; TRAIN_ITERS=300; IMG=1600x1000
fi
ls .whl/mmcv-2.1.0-*.whl >/dev/null 2>&1 || { echo "no mmcv wheel in .whl/: run build_mmcv_cuda.sh here first" >&2; exit 2; }
rm -rf /tmp/site
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg

step() {  # step NAME LIMIT_S COMMAND...: runs while budget is left; log in $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - start) ))
  if [ "$left" -lt 20 ]; then echo "$name skipped (budget spent)" | tee -a "$OUT/summary.txt"; return; fi
  [ "$limit" -le "$left" ] || limit=$left
  local s=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s ))s" | tee -a "$OUT/summary.txt"
  tail -n 30 "$OUT/$name.log"
}
{ nvidia-smi -L 2>&1; nproc; } > "$OUT/machine.txt"
step env 60 "$PY" -m afmcli env
step gpu_tests 150 "$PY" -m pytest -m gpu -v -s -rA -p no:cacheprovider tests
for amp in "" --amp; do
  step "bench_train${amp:+_amp}" 120 "$PY" bench/bench_train.py --device $DEV --size $SIZE --batch $BATCH \
    --iters $ITERS --warmup $WARM --threads 16 $amp
done
step bench_infer 170 "$PY" bench/bench_infer.py --device ${DEV/cuda/cuda:0} --val-images $VAL --size $IMG \
  --batch-sizes $BS --workers 4 --train-iters $TRAIN_ITERS --work /tmp/afm_bench_infer
# Whatever time is left: the CPU test suite on python 3.12 / torch 2.11 (-x: first failure).
step tests 150 "$PY" -m pytest -n 12 -q -x -m "not gpu and not slow" -p no:cacheprovider tests
echo "total $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
