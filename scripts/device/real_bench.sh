#!/usr/bin/env bash
# ON THE GPU MACHINE, one device call of about 9 minutes (issue 22):
#  1. training cost: bench_train.py at 1333x800, batch 4, AMP, TOOD against AFMNet, with a
#     torch.profiler summary of each iteration (top CUDA kernels, host time);
#  2. inference near the limit: bench_infer.py, the `afm infer` path against SAHI at batch 8,
#     32 and 64, fp32 and fp16 (and fp16 channels-last), tiles cut on the CPU and on the device,
#     BatchNorms folded, with the GPU's utilisation, and `afm infer` files to files with 4 workers; then
#     bench_decode.py: TOODHead's decoding of a batch, mmdet's per-image loop against ours;
#  3. the staged real-data comparison: bench_accuracy.py --real --preset gpu --staged (TOOD
#     alone, then TOOD continued against AFMNet from it, side by side). Each training has a
#     wall-clock limit (--max-time: it ends at the last epoch that fits, checkpoint saved), so
#     a slower GPU than guessed gives fewer epochs, not an empty table; the epoch counts are
#     upper bounds, and TOOD is also scored at AFMNet's last epoch where it got further;
#  4. in the time left, ONNX Runtime's CUDA and TensorRT (fp16) providers against PyTorch
#     (bench_onnx.py), where the machine's onnxruntime has CUDA.
# ROUND4=1 (issue 40): the staged comparison alone (steps 1 and 2 skipped), every row two seeds
#   from one stage 1: TOOD continued, AFMNet from TOOD, and the ablation rows CFPN, CFPN+FPD,
#   CFPN+HD+FPD, CFPN+HD+FPD+AFFM (12 trainings, 4 side by side, each at most 60 s, 4 epochs):
#   run(command="ROUND4=1 bash scripts/device/real_bench.sh", carry=[".whl", ".realdata"], timeout_s=595)
#   then at the lower stage-2 rate (a warm machine reuses stage 1): ROUND4=1 STAGE2_LR=2e-4 bash ...
# Logs and results land in $OUT (per-model logs and results in logs.tar.gz).
#   bash scripts/device/real_bench.sh --prepare   # here: .realdata/ (the preset's images)
#   run(command="bash scripts/device/real_bench.sh", carry=[".whl", ".realdata"], timeout_s=595)
# Dry run here, on CPU with a few images and one epoch per stage:
#   DRY=1 AFM_SHARED=../shared PYTHON=/tmp/afm-py312-cuda/bin/python bash scripts/device/real_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}

if [ "${1:-}" = --prepare ]; then
  grep -qx /.realdata/ .git/info/exclude || echo /.realdata/ >> .git/info/exclude
  prep_py=${PYTHON:-.venv/bin/python}
  command -v "$prep_py" >/dev/null || { echo "$prep_py not found: run 'make install' first (or set PYTHON)" >&2; exit 2; }
  rm -rf .realdata
  # The gpu preset's images (copies: a link would not travel) and every label file.
  "$prep_py" - <<'EOF' || exit 2
import importlib.util, shutil
from pathlib import Path
spec = importlib.util.spec_from_file_location('bench_accuracy', 'bench/bench_accuracy.py')
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
preset = bench.PRESETS['gpu']
dst = Path('.realdata/data/visdrone-real') / bench.REAL.name
(dst / 'images').mkdir(parents=True)
shutil.copytree(bench.REAL / 'annotations', dst / 'annotations')
for names in bench.real_parts(bench.REAL, preset['train_images'], preset['val_images']).values():
    for name in names:
        shutil.copy(bench.REAL / 'images' / name, dst / 'images' / name)
EOF
  du -sh .realdata .whl
  exit
fi

OUT=${OUT:-/tmp/afm_real_out}; mkdir -p "$OUT"
if [ -n "${DRY:-}" ]; then
  DEV=cpu; SIZES=(--train-images 4 --val-images 2 --epochs 3 --stage1-epochs 2 --max-time 15s)
  COST=(320x256 1 1 1)
  INFER=(--val-images 2 --size 640x400 --batch-sizes 2 --train-iters 4 --workers 1 --max-time 0)
  ONNX=(--val-images 2 --size 640x400 --batch-sizes 2 --train-iters 4)
  DECODE=(--batch-sizes 2 --rounds 1 --train-iters 4); LIMITS=(600 600 600 1800 1800)
else  # seconds for the training cost, the inference bench, the decoding bench, stage 1, stage 2: 575 s
  # Each stage: ~25 s to start, at most 100 s of training, then inference and evaluation.
  DEV=cuda:0; SIZES=(--epochs 12 --stage1-epochs 24 --max-time 100s); COST=(1333x800 4 20 5)
  INFER=(--val-images 16 --size 1600x1000 --batch-sizes 8 32 64 --train-iters 300 --workers 4 --max-time 30)
  ONNX=(--val-images 16 --size 1600x1000 --batch-sizes 32 --train-iters 300)  # bench_infer's model and data
  DECODE=(--batch-sizes 8 32 64 --rounds 3 --train-iters 300); LIMITS=(110 100 20 160 185)
fi
STAGE2=(--jobs 2 --models TOOD AFMNet)
VARIANTS=()
if [ -n "${ROUND4:-}" ]; then  # 160 s stage 1, then 3 rounds of 4 trainings (~25 s start, 60 s, ~40 s scoring)
  # ROWS replaces the rows (e.g. ROWS="AFMNet AFMNet+FPN_CARAFE"), STAGE2_LR sets stage 2's rate
  # shellcheck disable=SC2206  # ROWS is a list of words
  STAGE2=(--jobs $(( $(nproc) < 4 ? $(nproc) : 4 )) --seeds 0 1 --models ${ROWS:-TOOD AFMNet CFPN CFPN+FPD CFPN+HD+FPD CFPN+HD+FPD+AFFM}
          ${STAGE2_LR:+--stage2-lr "$STAGE2_LR"})
  VARIANTS=('main head')  # a rerun on the warm machine reuses the rows a time-out left finished
  [ -n "${DRY:-}" ] || { SIZES=(--epochs 4 --stage1-epochs 24 --max-time 60s); LIMITS=(0 0 0 160 405); }
fi
[ -d .realdata ] || { echo "no .realdata/: run with --prepare here first" >&2; exit 2; }
rm -rf /tmp/site
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg AFM_SHARED=${AFM_SHARED:-$PWD/.realdata}
# Fail at once, not at the time limit, where afm cannot start with the machine's packages.
"$PY" -m afmcli --version || exit 2
{ nvidia-smi -L; nproc; date -u; git rev-parse HEAD 2>/dev/null; } > "$OUT/machine.txt" 2>&1
start=$(date +%s)

# 1. Training cost with AMP (its own GPU, before the trainings start).
if [ -z "${ROUND4:-}" ]; then
size=${COST[0]} batch=${COST[1]} iters=${COST[2]} warm=${COST[3]}
timeout "${LIMITS[0]}" "$PY" bench/bench_train.py --device ${DEV%%:*} --size "$size" --batch "$batch" --iters "$iters" \
  --warmup "$warm" --only tood afmnet --threads 16 --profile $([ -z "${DRY:-}" ] && echo --amp) \
  > "$OUT/train_cost.log" 2>&1
echo "train_cost rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"

# 2. Inference near the limit (the GPU to itself, before the trainings).
timeout "${LIMITS[1]}" "$PY" bench/bench_infer.py --device $DEV "${INFER[@]}" --precisions fp32 fp16 \
  --device-tiles --fuse-conv-bn --channels-last --work /tmp/afm_bench_infer > "$OUT/infer.log" 2>&1
echo "infer rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
# The decoding of a batch (the model bench_infer trained and cached in the same --work).
timeout "${LIMITS[2]}" "$PY" bench/bench_decode.py --device $DEV "${DECODE[@]}" --work /tmp/afm_bench_infer \
  > "$OUT/decode.log" 2>&1
echo "decode rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
fi

# 3. The staged comparison.
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_use.csv" 2>/dev/null &
monitor=$!
# One BLAS/OpenMP thread per training process: the trainings share the container's cores.
export OMP_NUM_THREADS=1
bench() {  # bench NAME LIMIT ARGS...: one bench_accuracy run, its log in $OUT
  # No --variants by default (each head alone, ...): their inference passes would take the
  # trainings' time; ROUND4 scores the main head alone of the HD rows (is the merge a gain?).
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$PY" bench/bench_accuracy.py --real --preset gpu --staged --device $DEV "${SIZES[@]}" \
    --variants "${VARIANTS[@]}" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
}
bench stage1 "${LIMITS[3]}" --work /tmp/real_bench --stages 1
bench stage2 "${LIMITS[4]}" --work /tmp/real_bench --stages 2 "${STAGE2[@]}"
kill $monitor 2>/dev/null
cp /tmp/real_bench/results.json "$OUT/results.json" 2>/dev/null
(cd /tmp && tar -czf "$OUT/logs.tar.gz" --exclude='*.pth' --exclude='*.jpg' --exclude='Datasets' \
  --exclude='raw' real_bench) 2>/dev/null
# 4. ONNX Runtime on the GPU (bench_onnx.py: CUDA and TensorRT providers, fp16), in the time left of the
# box (the call's 595 s), on the model bench_infer cached: only where this machine's onnxruntime has CUDA
# (onnxruntime-gpu's wheel, ~300 MB, is past what a call carries). Not with ROUND4 (no cached model).
left=$(( 585 - ($(date +%s) - start) ))
if [ -z "${ROUND4:-}" ] && [ "$left" -ge 20 ] && \
    "$PY" -c "import onnx, onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" 2>/dev/null; then
  timeout "$left" "$PY" bench/bench_onnx.py --device $DEV --fp16 --threads 4 "${ONNX[@]}" \
    --work /tmp/afm_bench_infer > "$OUT/onnx_gpu.log" 2>&1
  echo "onnx_gpu rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
else
  echo "onnx_gpu skipped: ROUND4, no onnx + onnxruntime with CUDA here, or ${left}s left" | tee -a "$OUT/summary.txt"
fi
tail -n 25 "$OUT/train_cost.log" "$OUT/infer.log" "$OUT/decode.log" "$OUT/stage2.log"
