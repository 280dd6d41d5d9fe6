"""Speed of `afm evaluate --task mot` on the cases of tests/mot_cases.py (the four UAVDT
sequences, 7,298 ground-truth boxes, with each perturbation; and the hand-written case).

    taskset -c 0 .venv/bin/python bench/bench_mot_eval.py [--repeats 3]

Times afm's evaluation end to end (reading the folders and frame sizes, dropObjects, CLEAR
MOT, ID measures, TrackEval's HOTA), best of --repeats, in one process. The official toolkit's
time on the same cases is what scripts/mot_toolkit_reference.sh prints per case (GNU Octave;
its own mex files; createIntImg shadowed by cumsum).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from afmcli.evaluation.mot_loaders import evaluate_mot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import mot_cases  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = Table(title="afm evaluate --task mot (best of %d, s)" % args.repeats)
    for column in ("case", "gt rows", "result rows", "seconds", "MOTA", "IDF1", "HOTA"):
        table.add_column(column, justify="left" if column == "case" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for case in mot_cases.CASES:
            root = Path(tmp) / case
            mot_cases.write_case(case, root)
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = evaluate_mot(root / "annotations", root / "results", root / "sequences")
                best = min(best, time.perf_counter() - start)
            lines = [sum(1 for _ in open(p)) for folder in ("annotations", "results")
                     for p in sorted((root / folder).glob("*.txt"))]
            half = len(lines) // 2
            o = result.overall
            table.add_row(case, str(sum(lines[:half])), str(sum(lines[half:])), f"{best:.2f}",
                          f"{o['MOTA']:.1f}", f"{o['IDF1']:.1f}", f"{o['HOTA']:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
