#!/usr/bin/env bash
# ON THE GPU MACHINE, one device call of about 9 minutes (issue 22):
#  1. training cost: bench_train.py at 1333x800, batch 4, AMP, TOOD against AFMNet, with a
#     torch.profiler summary of each iteration (top CUDA kernels, host time);
#  2. the staged real-data comparison: bench_accuracy.py --real --preset gpu --staged (TOOD
#     alone, then TOOD continued against AFMNet from it, side by side), and beside them AFMNet
#     as it was before round 3 (the model code of $BEFORE) from the same stage 1.
# Logs and results land in $OUT (per-model logs and results in logs.tar.gz).
#   bash scripts/device/real_bench.sh --prepare   # here: .realdata/ (the preset's images), .before/
#   run(command="bash scripts/device/real_bench.sh", carry=[".whl", ".realdata", ".before"], timeout_s=590)
# Dry run here, on CPU with a few images and one epoch per stage:
#   DRY=1 AFM_SHARED=../shared PYTHON=/tmp/afm-py312-cuda/bin/python bash scripts/device/real_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
BEFORE=08c3394  # main before round 3 (issue 20): round 2's model, masks and tiny AFMNet config
PY=${PYTHON:-python3}

if [ "${1:-}" = --prepare ]; then
  for d in /.realdata/ /.before/; do grep -qx "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
  rm -rf .before .realdata && mkdir .before
  git archive "$BEFORE" afmcli/models afmcli/data/masks.py configs/AFM/afmnet_tiny_synth.py | tar -x -C .before || exit 2
  # The gpu preset's images (copies: a link would not travel) and every label file.
  "${PYTHON:-.venv/bin/python}" - <<'EOF' || exit 2
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
  du -sh .realdata .before .whl
  exit
fi

OUT=${OUT:-/tmp/afm_real_out}; mkdir -p "$OUT"
if [ -n "${DRY:-}" ]; then
  DEV=cpu; SIZES=(--train-images 4 --val-images 2 --epochs 1 --stage1-epochs 1); COST=(320x256 1 1 1)
  LIMITS=(1800 1800)
else  # seconds for stage 1, then for stage 2 (after and before side by side): 590 s in all
  DEV=cuda:0; SIZES=(); COST=(1333x800 4 20 5); LIMITS=(180 220)
fi
[ -d .realdata ] && [ -d .before ] || { echo "no .realdata/ or .before/: run with --prepare here first" >&2; exit 2; }
rm -rf /tmp/site
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MPLBACKEND=Agg AFM_SHARED=${AFM_SHARED:-$PWD/.realdata}
# Fail at once, not at the time limit, where afm cannot start with the machine's packages.
"$PY" -m afmcli --version || exit 2
{ nvidia-smi -L; nproc; date -u; git rev-parse HEAD 2>/dev/null; } > "$OUT/machine.txt" 2>&1
start=$(date +%s)

# 1. Training cost with AMP (its own GPU, before the trainings start).
size=${COST[0]} batch=${COST[1]} iters=${COST[2]} warm=${COST[3]}
timeout 150 "$PY" bench/bench_train.py --device ${DEV%%:*} --size "$size" --batch "$batch" --iters "$iters" \
  --warmup "$warm" --only tood afmnet --threads 16 --profile $([ -z "${DRY:-}" ] && echo --amp) \
  > "$OUT/train_cost.log" 2>&1
echo "train_cost rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"

# 2. The staged comparison. The before tree: this checkout with the model code, masks and tiny
# AFMNet config of $BEFORE (its bench is this one, which knows --staged and --stage1-from).
rm -rf /tmp/before_tree && mkdir /tmp/before_tree && cp -r afmcli bench configs /tmp/before_tree/
rm -rf /tmp/before_tree/afmcli/models && cp -r .before/afmcli/models /tmp/before_tree/afmcli/
cp .before/afmcli/data/masks.py /tmp/before_tree/afmcli/data/
cp .before/configs/AFM/afmnet_tiny_synth.py /tmp/before_tree/configs/AFM/
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_use.csv" 2>/dev/null &
monitor=$!
# One BLAS/OpenMP thread per training process: the trainings share the container's cores.
export OMP_NUM_THREADS=1
bench() {  # bench NAME LIMIT TREE ARGS...: one bench_accuracy run, its log and results in $OUT
  local name=$1 limit=$2 tree=$3; shift 3
  timeout "$limit" "$PY" "$tree/bench/bench_accuracy.py" --real --preset gpu --staged --device $DEV "${SIZES[@]}" \
    "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
}
bench stage1 "${LIMITS[0]}" . --work /tmp/real_after --stages 1
bench after "${LIMITS[1]}" . --work /tmp/real_after --stages 2 --jobs 2 --models TOOD AFMNet &
after=$!
bench before "${LIMITS[1]}" /tmp/before_tree --work /tmp/real_before --stage1-from /tmp/real_after/stage1 \
  --models AFMNet --variants &
wait $after $!  # the benches, not the monitor
kill $monitor 2>/dev/null
for name in after before; do cp "/tmp/real_$name/results.json" "$OUT/${name}_results.json" 2>/dev/null; done
(cd /tmp && tar -czf "$OUT/logs.tar.gz" --exclude='*.pth' --exclude='*.jpg' --exclude='Datasets' \
  --exclude='raw' real_after real_before) 2>/dev/null
tail -n 25 "$OUT/train_cost.log" "$OUT/after.log" "$OUT/before.log"
