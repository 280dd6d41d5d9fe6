#!/usr/bin/env bash
# Reproduce tests/reference_visdrone_mot.json: run the official VisDrone2018-MOT-toolkit
# (evaluateTrackB.m, Task 4B's evaluation) under GNU Octave on the cases of tests/mot_cases.py.
#
#   scripts/mot_toolkit_reference.sh TOOLKIT_DIR [OUT_JSON]
#
# TOOLKIT_DIR: a checkout of github.com/VisDrone/VisDrone2018-MOT-toolkit (tested at commit
# 2dc45b4634f9374bf886382258dcfc43f8cb964b). Its code is never copied into this repository:
# this script builds it in a scratch folder.
# Needs: GNU Octave with its mex headers (Debian 12: apt-get install octave octave-dev g++;
# older Debian releases name them octave-cli and liboctave-dev) and the project's Python
# (PYTHON=..., default .venv/bin/python; AFM_SHARED=... where shared/ is not beside the checkout).
# Changes to run it under Octave, none of which changes a number:
#  - the mex sources include <matrix.h>, which Octave lacks: a shim matrix.h includes mex.h
#    (and <cmath>, for MinCostMatching.cpp's fabs);
#  - mex files built WITHOUT OpenMP: costBlockMex calls the mex API from OpenMP threads, which
#    makes Octave abort at random;
#  - eval/createIntImg.m (a per-pixel loop, hours in Octave) is shadowed by
#    cumsum(cumsum(img, 1), 2), the same integral image.
set -euo pipefail
TOOLKIT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${2:-$ROOT/tests/reference_visdrone_mot.json}")
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
command -v "$PYTHON" >/dev/null || PYTHON=python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cp -r "$TOOLKIT" "$WORK/toolkit"
mkdir -p "$WORK/shim" "$WORK/shadow"
printf '#include "mex.h"\n#include <cmath>\n' > "$WORK/shim/matrix.h"
printf 'function intImg = createIntImg(img)\nintImg = cumsum(cumsum(img, 1), 2);\nend\n' > "$WORK/shadow/createIntImg.m"
for mex in clearMOTMex costBlockMex MinCostMatching; do
  (cd "$WORK/toolkit/utils" && mkoctfile --mex -I"$WORK/shim" "$mex.cpp" -o "$mex.mex" > "$WORK/$mex.build" 2>&1) \
    || { cat "$WORK/$mex.build" >&2; echo "building $mex.mex failed" >&2; exit 1; }
done

# The driver: evaluateTrackB as evalMOT.m calls it, then every number it prints at full
# precision: per sequence and overall (its return value), per class (evaluateBenchmark over
# the class's entries, NaN -> 0, as evaluateTrackB prints them).
cat > "$WORK/toolkit/run_reference.m" <<'EOF'
function run_reference(caseDir, shadowDir)
warning off all;
addpath('display'); addpath('eval'); addpath(genpath('utils')); addpath(shadowDir);
evalClassSet = {'car','bus','truck','pedestrian','van'};
seqPath = fullfile(caseDir, 'sequences'); resPath = fullfile(caseDir, 'results'); gtPath = fullfile(caseDir, 'annotations');
[tendallMets, allresult] = evaluateTrackB(seqPath, resPath, gtPath, evalClassSet);
seqs = findSeqList(seqPath);
for i = 1:numel(seqs)
  fprintf('REF sequence %s', seqs{i}); fprintf(' %.17g', allresult(i, :)); fprintf('\n');
end
fprintf('REF overall all'); fprintf(' %.17g', allresult(end, :)); fprintf('\n');
for k = 1:numel(evalClassSet)
  m = evaluateBenchmark(tendallMets(k:numel(evalClassSet):end), 0); m(isnan(m)) = 0;
  fprintf('REF class %s', evalClassSet{k}); fprintf(' %.17g', m); fprintf('\n');
end
end
EOF

PYTHONPATH=$ROOT "$PYTHON" "$ROOT/tests/mot_cases.py" "$WORK/cases"
for case_dir in "$WORK"/cases/*/; do
  name=$(basename "$case_dir")
  start=$(date +%s.%N)
  (cd "$WORK/toolkit" && octave-cli --no-gui --quiet --eval "run_reference('$case_dir', '$WORK/shadow')") \
    > "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log" >&2; exit 1; }
  echo "toolkit: $name $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
done
COMMIT=$(git -C "$TOOLKIT" rev-parse HEAD 2>/dev/null || echo unknown)
PYTHONPATH=$ROOT "$PYTHON" - "$WORK" "$OUT" "$COMMIT" "$(octave-cli --version | head -1)" <<'EOF'
import json, sys
from pathlib import Path
work, out, commit, octave = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
FIELDS = ["IDF1", "IDP", "IDR", "Rcll", "Prcn", "FAR", "GT", "MT", "PT", "ML", "FP", "FN", "IDs", "FM",
          "MOTA", "MOTP", "MOTAL"]
cases = {}
for log in sorted(work.glob("*.log")):
    case = cases.setdefault(log.stem, {"sequences": {}, "classes": {}})
    for line in log.read_text().splitlines():
        if line.startswith("REF "):
            _, scope, name, *values = line.split()
            numbers = dict(zip(FIELDS, (None if v.lower() == "nan" else float(v) for v in values)))
            if scope == "overall":
                case["overall"] = numbers
            else:
                case["sequences" if scope == "sequence" else "classes"][name] = numbers
reference = {
    "produced_by": "scripts/mot_toolkit_reference.sh: VisDrone/VisDrone2018-MOT-toolkit evaluateTrackB.m "
                   f"at commit {commit}, under {octave}, on the cases of tests/mot_cases.py",
    "toolkit_commit": commit,
    "fields": FIELDS,
    "cases": cases,
}
out.write_text(json.dumps(reference, indent=1) + "\n")
print(f"wrote {out}: {len(cases)} cases")
EOF
