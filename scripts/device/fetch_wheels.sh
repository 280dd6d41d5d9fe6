#!/usr/bin/env bash
# Run HERE (with network): wheels for the GPU machine (python 3.12, x86-64) into .whl/.
# mmcv's CUDA wheel is built here too, by build_mmcv_cuda.sh, into the same folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PINS=requirements/pins.txt
pin() { grep -E "^$1==" "$PINS" | head -1; }
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# What the GPU image lacks (it has torch, numpy, opencv-headless, scipy, matplotlib, rich, typer...),
# and the pinned setuptools (mmengine and mmcv import pkg_resources, which setuptools 82 dropped).
for spec in "$(pin mmengine)" "$(pin mmdet)" addict yapf terminaltables "$(pin pycocotools)" \
            "$(pin faster-coco-eval)" "$(pin ensemble-boxes)" "$(pin imagesize)" "$(pin shapely)" \
            "$(pin sahi)" pybboxes fire termcolor platformdirs tomli "$(pin setuptools)"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLAT[@]}" -d .whl "$spec"
done
ls -la .whl
