"""The README's pictures (docs/img) from an `afm demo` output folder: the error-analysis
figure, one TP/FP/FN drawing, and the report as headless Chromium renders it.

    .venv/bin/python scripts/docs_images.py DEMO_OUT docs/img [DRAWING.png] [a-b,c-d,e-f]

The last argument gives the page's three parts (y ranges, pixels) to keep; without it only
DEMO_OUT/page.png (the whole page) is written, to choose them. PNGs are quantised to 256
colours, at most 1000 px wide (the figure 1400), to stay small.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PARTS = ("report_top.png", "report_analysis.png", "report_gallery.png")


def save(image: np.ndarray, path: Path, width: int) -> None:
    if image.shape[1] > width:
        image = cv2.resize(image, None, fx=width / image.shape[1], fy=width / image.shape[1],
                           interpolation=cv2.INTER_AREA)
    rgb = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.shape[1]}x{image.shape[0]}, {path.stat().st_size // 1024} KB")


def render(index: Path, shot: Path) -> np.ndarray:
    """The page in headless Chromium, 1280 px wide, white rows at the bottom cut."""
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,9000", f"--screenshot={shot}", index.as_uri()],
                   check=True, capture_output=True, timeout=300)
    page = cv2.imread(str(shot))
    return page[:np.flatnonzero((page < 250).any(axis=(1, 2)))[-1] + 20]


def main(argv: list[str]) -> None:
    demo, out = Path(argv[0]), Path(argv[1])
    report = demo / "report"
    out.mkdir(parents=True, exist_ok=True)
    save(cv2.imread(str(report / "analysis" / "error_decomposition.png")), out / "error_analysis.png", 1400)
    drawing = report / "worst" / argv[2] if len(argv) > 2 else sorted((report / "worst").glob("*.[pj][np]g"))[0]
    save(cv2.imread(str(drawing)), out / "tp_fp_fn.png", 1000)
    page = render(report / "index.html", demo / "report_shot.png")
    cv2.imwrite(str(demo / "page.png"), page)
    if len(argv) > 3:
        for name, part in zip(PARTS, argv[3].split(",")):
            a, b = (int(v) for v in part.split("-"))
            save(page[a:b], out / name, 1000)


if __name__ == "__main__":
    main(sys.argv[1:])
