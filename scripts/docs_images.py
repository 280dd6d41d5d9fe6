"""The README's pictures (docs/img) from an `afm demo` output folder: the error-analysis
figure, one TP/FP/FN drawing, and the report as headless Chromium renders it.

    .venv/bin/python scripts/docs_images.py DEMO_OUT docs/img [DRAWING.png] [a-b,c-d,e-f]

The last argument gives the page's three parts (y ranges, pixels) to keep; without it only
DEMO_OUT/page.png (the whole page) is written, to choose them. PNGs quantised to 256
colours, at most 1000 px wide (the figure 1400), to stay small.
"""
import subprocess, sys
from pathlib import Path
import cv2
import numpy as np
from PIL import Image

demo, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
report = demo / "report"

def save(img_bgr, name, width=None, colors=256):
    if width and img_bgr.shape[1] > width:
        s = width / img_bgr.shape[1]
        img_bgr = cv2.resize(img_bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    im = Image.fromarray(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)).quantize(colors, method=Image.Quantize.MEDIANCUT)
    im.save(out / name, optimize=True)
    print(name, img_bgr.shape, (out / name).stat().st_size // 1024, "KB")

save(cv2.imread(str(report / "analysis" / "error_decomposition.png")), "error_analysis.png", 1400)
worst = sorted((report / "worst").iterdir())
first = cv2.imread(str(report / "worst" / sys.argv[3])) if len(sys.argv) > 3 else cv2.imread(str(worst[0]))
save(first, "tp_fp_fn.png")
shot = demo / "report_shot.png"
subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--window-size=1280,9000", f"--screenshot={shot}", (report / "index.html").as_uri()],
               check=True, capture_output=True, timeout=300)
page = cv2.imread(str(shot))
rows = np.flatnonzero((page < 250).any(axis=(1, 2)))
page = page[:rows[-1] + 20]
print("page", page.shape)
cv2.imwrite(str(demo / "page.png"), page)
if len(sys.argv) > 4:  # y ranges a-b,c-d,e-f of the three parts
    for name, part in zip(("report_top.png", "report_analysis.png", "report_gallery.png"), sys.argv[4].split(",")):
        a, b = (int(v) for v in part.split("-"))
        save(page[a:b], name, 1000)
