"""Tracking evaluation cases in VisDrone-MOT's layout, for tests/test_eval_mot.py and
scripts/mot_toolkit_reference.sh (which runs the official toolkit on the same files).

A case folder holds ``sequences/<seq>/0000001.jpg`` (one blank frame: the toolkit reads the
frame size from it), ``annotations/<seq>.txt`` and ``results/<seq>.txt``.

- ``uavdt_*``: the four real UAVDT sequences of ../shared/data/uavdt-mot-gt (1024x540 frames),
  converted as its README says: ``frame, id, x, y, w, h, out_of_view, occlusion, category``
  with category 1 car, 2 truck, 3 bus -> VisDrone-MOT rows with categories 4, 6, 9 and score 1;
  the per-frame ignored regions -> category-0 rows. Results: the ground truth itself
  (perfect), with boxes removed (dropped), with the ids of chosen track pairs exchanged from a
  frame on (swapped: two id switches per pair), with jittered boxes and false positives, or
  all of these at once (mixed).
- ``synthetic``: two small sequences written by hand with all five classes, an ignored region,
  an 'others' box, a class change inside one track, a track with a gap and results of the
  wrong class.

``python tests/mot_cases.py OUT`` writes every case into OUT/<case>/ and OUT/cases.json (what
each perturbation did: removed rows, swapped pairs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

UAVDT = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "uavdt-mot-gt"
UAVDT_SEQUENCES = ("M0202", "M0207", "M0208", "M0301")
UAVDT_SIZE = (540, 1024)  # height, width
UAVDT_CATEGORY = {1: 4, 2: 6, 3: 9}  # car, truck, bus -> VisDrone's car, truck, bus
CASES = ("uavdt_perfect", "uavdt_dropped", "uavdt_swapped", "uavdt_jittered", "uavdt_mixed", "synthetic")


def uavdt_ground_truth(seq: str) -> np.ndarray:
    """One UAVDT sequence as VisDrone-MOT ground-truth rows (objects, then ignored regions)."""
    whole = np.loadtxt(UAVDT / f"{seq}_gt_whole.txt", delimiter=",", ndmin=2)
    objects = np.column_stack([whole[:, :6], np.ones(len(whole)),
                               [UAVDT_CATEGORY[int(c)] for c in whole[:, 8]],
                               np.minimum(whole[:, 6] - 1, 1), np.minimum(whole[:, 7] - 1, 2)])
    path = UAVDT / f"{seq}_gt_ignore.txt"
    ignore = np.loadtxt(path, delimiter=",", ndmin=2) if path.stat().st_size else np.zeros((0, 9))
    regions = np.column_stack([ignore[:, 0], -np.ones(len(ignore)), ignore[:, 2:6], np.zeros((len(ignore), 4))])
    return np.concatenate([objects, regions])


def as_result(rows: np.ndarray) -> np.ndarray:
    """Ground-truth object rows as a tracker's result rows (truncation, occlusion -1)."""
    out = rows[rows[:, 7] != 0].copy()
    out[:, 8:] = -1
    return out


def _clear_of_regions(box: np.ndarray, regions: np.ndarray) -> bool:
    """No overlap (with a 2-pixel margin) with any of the frame's ignored regions."""
    if not len(regions):
        return True
    x, y, w, h = box
    rx, ry, rw, rh = regions.T
    return bool(((x + w + 2 < rx) | (rx + rw + 2 < x) | (y + h + 2 < ry) | (ry + rh + 2 < y)).all())


def swap_pairs(gt: np.ndarray, max_pairs: int = 3) -> list[tuple[int, int, int]]:
    """(id a, id b, frame f): disjoint same-class track pairs, both seen at f - 1 and f, clear of
    ignored regions there, not overlapping at f (IoU < 0.5 by far): exchanging their result ids
    from f on makes exactly two id switches."""
    objects, regions = gt[gt[:, 7] != 0], gt[gt[:, 7] == 0]
    ids = np.unique(objects[:, 1]).astype(int)
    used: set[int] = set()
    pairs = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if a in used or b in used or len(pairs) == max_pairs:
                continue
            ra, rb = objects[objects[:, 1] == a], objects[objects[:, 1] == b]
            if ra[0, 7] != rb[0, 7]:
                continue
            common = np.intersect1d(ra[:, 0], rb[:, 0])
            common = common[np.isin(common - 1, common)]
            for f in common[len(common) // 2:]:
                frames_ok = all(_clear_of_regions(r[r[:, 0] == t][0, 2:6], regions[regions[:, 0] == t, 2:6])
                                for r in (ra, rb) for t in (f - 1, f))
                box_a, box_b = ra[ra[:, 0] == f][0, 2:6], rb[rb[:, 0] == f][0, 2:6]
                apart = (box_a[0] + box_a[2] < box_b[0] or box_b[0] + box_b[2] < box_a[0]
                         or box_a[1] + box_a[3] < box_b[1] or box_b[1] + box_b[3] < box_a[1])
                if frames_ok and apart:
                    pairs.append((int(a), int(b), int(f)))
                    used.update((int(a), int(b)))
                    break
    return pairs


def perturb(case: str, gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The result rows of ``case`` for one sequence's ground truth, and what was done."""
    if case == "uavdt_mixed":
        notes = {}
        result = as_result(gt)
        for step in ("uavdt_swapped", "uavdt_dropped", "uavdt_jittered"):
            result, done = perturb(step, np.concatenate([result, gt[gt[:, 7] == 0]]), rng)
            notes.update(done)
        return result, notes
    result = as_result(gt)
    if case == "uavdt_dropped":
        removed = np.sort(rng.choice(len(result), size=len(result) // 10, replace=False))
        return np.delete(result, removed, axis=0), {"removed_rows": result[removed, :2].astype(int).tolist()}
    if case == "uavdt_swapped":
        pairs = swap_pairs(gt)
        ids = result[:, 1].copy()
        for a, b, f in pairs:
            later = result[:, 0] >= f
            ids[later & (result[:, 1] == a)] = b
            ids[later & (result[:, 1] == b)] = a
        result[:, 1] = ids
        return result, {"swapped_pairs": pairs}
    if case == "uavdt_jittered":
        w, h = result[:, 4], result[:, 5]
        result[:, 2] += rng.normal(0, 0.1, len(result)) * w
        result[:, 3] += rng.normal(0, 0.1, len(result)) * h
        result[:, 4] = w * np.exp(rng.normal(0, 0.1, len(result)))
        result[:, 5] = h * np.exp(rng.normal(0, 0.1, len(result)))
        result[:, 2:6] = np.round(result[:, 2:6], 2)
        result[:, 6] = np.round(rng.uniform(0.3, 1, len(result)), 3)
        n = len(result) // 20  # false positives: random boxes, new ids, the sequence's classes
        fp = np.zeros((n, 10))
        fp[:, 0] = rng.integers(1, int(gt[:, 0].max()) + 1, n)
        fp[:, 1] = 10000 + np.arange(n)  # one box each: a track has one box per frame
        fp[:, 2] = np.round(rng.uniform(0, UAVDT_SIZE[1] - 60, n), 2)
        fp[:, 3] = np.round(rng.uniform(0, UAVDT_SIZE[0] - 40, n), 2)
        fp[:, 4:6] = np.round(rng.uniform(15, 60, (n, 2)), 2)
        fp[:, 6] = 0.3
        fp[:, 7] = rng.choice(np.unique(result[:, 7]), n)
        fp[:, 8:] = -1
        out = np.concatenate([result, fp])
        return out[np.argsort(out[:, 0], kind="stable")], {"false_positives": n}
    return result, {}


def _track(frame0: int, frames: int, x: float, y: float, w: float, h: float, dx: float, dy: float) -> np.ndarray:
    """(frames, 3 + 4) rows frame, x, y, w, h of a box moving by (dx, dy) per frame."""
    t = np.arange(frames)
    return np.column_stack([frame0 + t, x + dx * t, y + dy * t, np.full(frames, w), np.full(frames, h)])


def _rows(track: np.ndarray, tid: int, category: int, score: float = 1, tail=(0, 0)) -> np.ndarray:
    n = len(track)
    return np.column_stack([track[:, 0], np.full(n, tid), track[:, 1:5], np.full(n, score), np.full(n, category),
                            np.full(n, tail[0]), np.full(n, tail[1])])


def synthetic() -> dict[str, tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """Two hand-written sequences: name -> ((height, width), gt rows, result rows)."""
    res_tail = (-1, -1)
    # synth_a: 640x360, 20 frames.
    ped = _track(1, 20, 20, 20, 12, 30, 4, 0)
    car = _track(1, 20, 100, 200, 40, 24, 5, 1)
    van = _track(3, 16, 400, 50, 44, 30, -3, 2)
    truck = _track(1, 10, 300, 300, 60, 30, 2, 0)
    bus = _track(1, 20, 500, 150, 80, 40, -2, 0)
    mixed = _track(1, 20, 50, 120, 36, 22, 6, 0)          # car in 1-10, van in 11-20
    hidden = _track(1, 15, 200, 100, 30, 20, 0, 0)         # inside the ignored region in frames 5-8
    region = np.array([[f, -1, 190, 90, 60, 40, 0, 0, 0, 0] for f in range(5, 9)], float)
    others = np.array([[f, 99, 560, 300, 60, 50, 0, 11, 0, 0] for f in range(1, 21)], float)
    gt_a = np.concatenate([_rows(ped, 1, 1), _rows(car, 2, 4), _rows(van, 3, 5), _rows(truck, 4, 6),
                           _rows(bus, 5, 9), _rows(mixed[:10], 6, 4), _rows(mixed[10:], 6, 5),
                           _rows(hidden, 7, 4), region, others])
    car_jit = car.copy()
    car_jit[:, 1] += 3
    bus_fp = _track(1, 5, 10, 320, 30, 20, 0, 0)
    in_others = _track(1, 20, 570, 310, 30, 30, 0, 0)      # inside the 'others' box: dropped
    res_a = np.concatenate([
        _rows(ped[:10], 100, 1, 0.9, res_tail), _rows(ped[10:], 101, 1, 0.9, res_tail),   # one switch at 11
        _rows(car_jit, 200, 4, 0.8, res_tail),
        _rows(np.delete(van, [5, 6, 7], axis=0), 300, 5, 0.7, res_tail),                   # gap: a fragmentation
        _rows(truck, 400, 9, 0.6, res_tail),                                                # truck labelled bus
        _rows(bus, 500, 9, 0.9, res_tail), _rows(bus_fp, 501, 9, 0.2, res_tail),
        _rows(mixed[:10], 600, 4, 0.9, res_tail), _rows(mixed[10:], 601, 5, 0.9, res_tail),
        _rows(hidden, 700, 4, 0.9, res_tail), _rows(in_others, 800, 4, 0.5, res_tail),
        _rows(_track(1, 20, 10, 200, 20, 20, 1, 0), 900, 10, 0.9, res_tail),                # motor: not evaluated
    ])
    # synth_b: 320x240, 12 frames: two pedestrians cross; one leaves the ground truth at frame 6.
    p1 = _track(1, 12, 20, 100, 10, 24, 10, 0)
    p2 = _track(1, 12, 130, 100, 10, 24, -10, 0)
    gt_b = np.concatenate([_rows(p1, 1, 1), _rows(np.delete(p2, [5], axis=0), 2, 1)])
    res_b = np.concatenate([
        _rows(np.concatenate([p1[:7], p2[7:]]), 10, 1, 1, res_tail),   # follows p1 then jumps to p2
        _rows(np.concatenate([p2[:7], p1[7:]]), 11, 1, 1, res_tail),
    ])
    return {"synth_a": ((360, 640), gt_a, res_a), "synth_b": ((240, 320), gt_b, res_b)}


def _write_rows(path: Path, rows: np.ndarray) -> None:
    def fmt(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else f"{v:.3f}".rstrip("0")

    path.write_text("".join(",".join(fmt(v) for v in row) + "\n" for row in rows))


def write_sequence(case_dir: Path, name: str, size: tuple[int, int], gt: np.ndarray, result: np.ndarray) -> None:
    import cv2

    frames = case_dir / "sequences" / name
    frames.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(frames / "0000001.jpg"), np.zeros((*size, 3), np.uint8))
    for folder, rows in (("annotations", gt), ("results", result)):
        (case_dir / folder).mkdir(exist_ok=True)
        _write_rows(case_dir / folder / f"{name}.txt", rows)


def write_case(case: str, case_dir: Path) -> dict:
    """Write one case; returns what each sequence's perturbation did."""
    notes = {}
    if case == "synthetic":
        for name, (size, gt, res) in synthetic().items():
            write_sequence(case_dir, name, size, gt, res)
        return notes
    rng = np.random.default_rng(37)
    for seq in UAVDT_SEQUENCES:
        gt = uavdt_ground_truth(seq)
        result, notes[seq] = perturb(case, gt, rng)
        write_sequence(case_dir, seq, UAVDT_SIZE, gt, result)
    return notes


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    notes = {case: write_case(case, out / case) for case in CASES}
    (out / "cases.json").write_text(json.dumps(notes, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
