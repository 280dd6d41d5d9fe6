#!/usr/bin/env bash
# Real-VisDrone equal-budget bench ON THE GPU MACHINE, one device call of about 9 minutes:
# `bench_accuracy.py --real --preset gpu` for TOOD and AFMNet side by side (--jobs), and beside
# them AFMNet as it was before round 2's items 2-4 (the model code of $BEFORE), on the same
# split and schedule; with ABLATION=1 the per-branch ablation rows instead. Logs and results
# land in $OUT (per-model logs and results in logs.tar.gz).
#   bash scripts/device/real_bench.sh --prepare   # here: .realdata/ (the preset's images), .before/
#   run(command="bash scripts/device/real_bench.sh", carry=[".whl", ".realdata", ".before"], timeout_s=590)
# Dry run here, on CPU with a few images and one epoch:
#   DRY=1 AFM_SHARED=../shared PYTHON=/tmp/afm-py312-cuda/bin/python bash scripts/device/real_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
BEFORE=17c6d60^  # the parent of "HD head: whole boxes by centre, ..." (items 2 to 4)
PY=${PYTHON:-python3}

if [ "${1:-}" = --prepare ]; then
  for d in /.realdata/ /.before/; do grep -qx "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
  rm -rf .before .realdata && mkdir .before
  git archive "$BEFORE" afmcli/models configs/AFM/afmnet_tiny_synth.py | tar -x -C .before || exit 2
  # Round 2's fp32-safe losses, which the base configs now name (the same numbers in fp32).
  git show HEAD:afmcli/models/losses.py > .before/afmcli/models/losses.py
  sed -i 's/^from .irfi import IRFI$/&\nfrom .losses import FocalLossFP32, QualityFocalLossFP32/' \
    .before/afmcli/models/__init__.py
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
  DEV=cpu; SIZES=(--train-images 4 --val-images 2 --epochs 1); MODELS=(TOOD AFMNet); LIMIT=1800
else
  DEV=cuda:0; SIZES=(); MODELS=(TOOD AFMNet); LIMIT=530
fi
# The lent machine gave this container 2 CPU cores (nproc): each training is one process that
# keeps a core busy, so TOOD, AFMNet and AFMNet-before fill it. ABLATION=1 trains the four
# ablation rows instead (a second call).
[ -n "${ABLATION:-}" ] && MODELS=(CFPN CFPN+HD CFPN+HD+FPD CFPN+HD+FPD+AFFM)
[ -d .realdata ] && [ -d .before ] || { echo "no .realdata/ or .before/: run with --prepare here first" >&2; exit 2; }
rm -rf /tmp/site
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
# One BLAS/OpenMP thread per process: the trainings share the container's cores.
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MPLBACKEND=Agg AFM_SHARED=${AFM_SHARED:-$PWD/.realdata} OMP_NUM_THREADS=1
# Fail at once, not at the time limit, where afm cannot start with the machine's packages.
"$PY" -m afmcli --version || exit 2
{ nvidia-smi -L; nproc; date -u; } > "$OUT/machine.txt" 2>&1
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_use.csv" 2>/dev/null &
monitor=$!

# The before tree: this checkout's code with the model code and tiny AFMNet config of $BEFORE.
rm -rf /tmp/before_tree && mkdir /tmp/before_tree && cp -r afmcli bench configs /tmp/before_tree/
rm -rf /tmp/before_tree/afmcli/models && cp -r .before/afmcli/models /tmp/before_tree/afmcli/
cp .before/configs/AFM/afmnet_tiny_synth.py /tmp/before_tree/configs/AFM/

bench() {  # bench NAME TREE ARGS...: one bench_accuracy run, its log and results in $OUT
  local name=$1 tree=$2; shift 2
  timeout "$LIMIT" "$PY" "$tree/bench/bench_accuracy.py" --real --preset gpu --device $DEV "${SIZES[@]}" \
    --work "/tmp/real_$name" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
}
start=$(date +%s)
bench after . --jobs ${#MODELS[@]} --models "${MODELS[@]}" &
after=$!
if [ -z "${ABLATION:-}" ]; then bench before /tmp/before_tree --models AFMNet & fi
wait $after $!  # the benches, not the monitor
kill $monitor 2>/dev/null
for name in after before; do cp "/tmp/real_$name/results.json" "$OUT/${name}_results.json" 2>/dev/null; done
(cd /tmp && tar -czf "$OUT/logs.tar.gz" --exclude='*.pth' --exclude='*.jpg' --exclude='Datasets' \
  --exclude='raw' real_after real_before) 2>/dev/null
tail -n 25 "$OUT/after.log" "$OUT/before.log"
