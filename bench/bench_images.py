"""What refusing damaged images costs: afm's reader against OpenCV alone, on real images.

    .venv/bin/python bench/bench_images.py [--images DIR] [--repeats 5]

Side by side in one run, on the real VisDrone images of ``--images`` (default: the
shared visdrone-real train split):
- full decode of the 2000x1500 images: ``cv2.imread`` (what afm used to call; a JPEG
  cut short decodes half grey) vs ``afmcli.data.images.read_image`` (same decode
  plus the end-marker check);
- image size for conversion: ``imagesize.get`` (header only, what convert used to
  call) vs ``image_size`` (header plus the completeness check, which reads the file).
The two calls alternate image by image; best of ``--repeats`` passes (the files
are in the page cache after the first).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import imagesize
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afmcli.data.images import image_size, list_images, read_image  # noqa: E402

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared/data/visdrone-real/VisDrone2019-DET-train/images"


def best_ms_per_image(peer, ours, paths: list[Path], repeats: int) -> tuple[float, float]:
    """Best pass of each, in ms per image; the two calls alternate image by image so
    that a busy machine slows both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        spent = [0.0, 0.0]
        for path in paths:
            for k, fn in enumerate((peer, ours)):
                start = time.perf_counter()
                fn(path)
                spent[k] += time.perf_counter() - start
        best = [min(b, t / len(paths) * 1000) for b, t in zip(best, spent)]
    return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    paths = list_images(args.images)
    big = [p for p in paths if imagesize.get(p) == (2000, 1500)]
    if not big:
        raise SystemExit(f"{args.images}: no 2000x1500 images")
    rows = [
        ("decode 2000x1500 (%d images)" % len(big),
         *best_ms_per_image(lambda p: cv2.imread(str(p)), read_image, big, args.repeats)),
        ("size for convert (%d images)" % len(paths),
         *best_ms_per_image(imagesize.get, image_size, paths, args.repeats)),
    ]
    table = Table(title="afm's image reading vs the unchecked calls (ms per image, best of %d)" % args.repeats)
    for column in ("what", "unchecked", "afm (checked)", "ratio"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for what, peer, ours in rows:
        table.add_row(what, f"{peer:.3f}", f"{ours:.3f}", f"{ours / peer:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
