"""The VisDrone-DET text format: one file per image, one object per line.

``bbox_left, bbox_top, bbox_width, bbox_height, score, object_category, truncation, occlusion``
(see ../shared/specs/visdrone-eval.md). Real files carry CRLF line ends, trailing
commas and blank lines: accepted. Anything else is rejected with file and line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from afmcli.errors import AfmError

# VisDrone's own ids; 0 (ignored region) and 11 (others) are not evaluated classes.
CLASSES = ("pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle",
           "awning-tricycle", "bus", "motor")
CATEGORY_IDS = tuple(range(1, 11))
IGNORED_REGION = 0
OTHERS = 11
NUM_FIELDS = 8


def parse_visdrone_text(text: str, source: str = "<text>", num_fields: int = NUM_FIELDS,
                        size_columns: tuple[int, int] = (2, 3)) -> np.ndarray:
    """Parse VisDrone lines into an (N, num_fields) float64 array, in file order.

    ``source`` names the file in error messages (``file:line: problem``). VisDrone-MOT
    files have 10 fields with the width and height in columns 4 and 5.
    """
    fast = _parse_valid_text(text, num_fields, size_columns)
    if fast is not None:
        return fast
    rows: list[list[float]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.endswith(","):
            line = line[:-1]
        fields = line.split(",")
        if len(fields) != num_fields:
            raise AfmError(f"{source}:{lineno}: expected {num_fields} comma-separated fields, "
                           f"got {len(fields)}: {raw.strip()!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise AfmError(f"{source}:{lineno}: not a number in {raw.strip()!r}") from None
        if not all(np.isfinite(values)):
            raise AfmError(f"{source}:{lineno}: not a finite number in {raw.strip()!r}")
        if values[size_columns[0]] < 0 or values[size_columns[1]] < 0:
            raise AfmError(f"{source}:{lineno}: negative box size in {raw.strip()!r}")
        rows.append(values)
    if not rows:
        return np.zeros((0, num_fields), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def _parse_valid_text(text: str, num_fields: int = NUM_FIELDS,
                      size_columns: tuple[int, int] = (2, 3)) -> np.ndarray | None:
    """Vectorised parse of a well-formed file (evaluation reads ~300k lines);
    None when any line is off, so that the line loop reports it."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line[:-1] if line.endswith(",") else line for line in lines if line]
    if not lines:
        return np.zeros((0, num_fields), dtype=np.float64)
    if any(line.count(",") != num_fields - 1 for line in lines):
        return None
    try:
        rows = np.fromiter(map(float, ",".join(lines).split(",")), np.float64).reshape(-1, num_fields)
    except ValueError:
        return None
    if not np.isfinite(rows).all() or (rows[:, list(size_columns)] < 0).any():
        return None
    return rows


def read_visdrone_file(path: str | os.PathLike, **layout) -> np.ndarray:
    """Read one VisDrone annotation or result file; an empty file has no objects.
    ``layout``: num_fields and size_columns of :func:`parse_visdrone_text`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AfmError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AfmError(f"{path}: not a text file (not UTF-8)") from None
    return parse_visdrone_text(text, str(path), **layout)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4f}".rstrip("0")


def format_visdrone_lines(rows: np.ndarray) -> str:
    """Format (N, 8) rows as VisDrone text: integers bare, floats with 4 decimals."""
    return "".join(",".join(_fmt(v) for v in row) + "\n" for row in np.asarray(rows, dtype=np.float64))


def data_line_numbers(text: str) -> list[int]:
    """1-based line numbers of the non-blank lines: row k of `parse_visdrone_text` came
    from line ``data_line_numbers(text)[k]`` (for error messages about a row)."""
    return [n for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
