"""Tracking: the trackers' cost beside the detector's, ByteTrack beside OC-SORT, `afm infer`'s
detections beside SAHI-sliced ones on the same frames, and memory over a long sequence.

    .venv/bin/python bench/bench_track.py [--sequences 3] [--frames 60] [--size 640x360]
        [--long-frames 3000] [--train-iters 200] [--work /tmp/afm_bench_track] [--skip-detector]

On `afm synth --sequences` data (ground-truth tracks known):
1. trackers on ground-truth-derived detections (each box jittered by 5% of its size, 10%
   missed, scores 0.3 to 1, one false positive per frame): per tracker, the tracker's ms per
   frame and the id consistency (:func:`id_consistency`: how much of each true track one id
   covers, id switches) for its defaults and the settings swept for the defaults' choice;
   then MOTA / IDF1 / HOTA by `afm evaluate --task mot`'s code for afm's and mmdet's defaults,
   then each tracker's ms per frame at its defaults, best of 5 alternated runs;
2. memory: the process's peak RSS after 500 frames and after --long-frames frames of one
   long sequence with ByteTrack (flat when the tracker forgets finished tracks);
3. the detector (unless --skip-detector): the tiny plain-mmdet TOOD (tests/fixtures/tiny_tood.py)
   trained --train-iters steps on synth images (bench/bench_infer.py's cache), run over the
   sequences' frames by `afm infer`'s path (afmcli.predict_source: tiles + full image) and
   by SAHI's get_sliced_prediction (tiles + full image, one tile per forward pass), each
   followed by ByteTrack: detector frames/s, tracker ms/frame, id consistency of each.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from afmcli.data.synth_video import synth_sequence, write_synth_sequences
from afmcli.detections import Detections
from afmcli.tracking.build import build_tracker

ROOT = Path(__file__).resolve().parent.parent


def gt_objects(rows: np.ndarray) -> np.ndarray:
    """The rows of objects (score 1, category 1..10) of VisDrone-MOT ground truth."""
    return rows[(rows[:, 6] == 1) & (rows[:, 7] > 0) & (rows[:, 7] < 11)]


def noisy_detections(frame_rows: np.ndarray, rng: np.random.Generator, jitter: float = 0.05, miss: float = 0.1,
                     false_per_frame: float = 1.0, size: tuple[int, int] = (640, 360)) -> Detections:
    """A detector that sees well, from one frame's ground truth: boxes moved and resized by
    ``jitter`` of their size, ``miss`` of them dropped, scores 0.3 to 1 (lower when
    occluded), and Poisson(``false_per_frame``) false boxes of 8 to 30 px."""
    obj = gt_objects(frame_rows)
    obj = obj[rng.random(len(obj)) >= miss]
    wh = obj[:, 4:6]
    xy = obj[:, 2:4] + rng.normal(0, jitter, (len(obj), 2)) * wh
    wh = wh * np.exp(rng.normal(0, jitter, (len(obj), 2)))
    scores = np.clip(rng.uniform(0.5, 1.0, len(obj)) - 0.2 * obj[:, 9], 0.3, 1.0)
    n_false = rng.poisson(false_per_frame)
    fwh = rng.uniform(8, 30, (n_false, 2))
    fxy = rng.uniform(0, 1, (n_false, 2)) * (np.array(size) - fwh)
    boxes = np.r_[np.c_[xy, xy + wh], np.c_[fxy, fxy + fwh]]
    return Detections(boxes, np.r_[scores, rng.uniform(0.1, 0.8, n_false)],
                      np.r_[obj[:, 7], rng.choice([1, 4], n_false)].astype(np.int64))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes x y w h, (len(a), len(b))."""
    ax2, bx2 = a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:]
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(ax2[:, None], bx2[None])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = np.prod(a[:, 2:], 1)[:, None] + np.prod(b[:, 2:], 1)[None] - inter
    return inter / np.maximum(union, 1e-9)


def id_consistency(gt_rows: np.ndarray, pred_rows: np.ndarray, iou: float = 0.5) -> dict:
    """How well ids follow the true tracks (a check, not MOT's metrics): per frame, true and
    predicted boxes of one category are matched one to one at IoU >= ``iou`` (Hungarian);
    ``matched``: share of true boxes matched; ``id_recall``: share of true boxes matched by
    their track's most frequent predicted id (1 when each true track keeps one id);
    ``switches``: times a true track's matched id changes from its previous matched id;
    ``mostly_one_id``: share of true tracks (5+ boxes) whose most frequent id covers >= 80%."""
    from scipy.optimize import linear_sum_assignment

    gt_rows, pred_rows = gt_objects(gt_rows), np.asarray(pred_rows, dtype=np.float64).reshape(-1, 10)
    pairs: dict[int, list[int]] = {}  # true id -> matched predicted id per frame in order
    for frame in np.unique(gt_rows[:, 0]):
        g, p = gt_rows[gt_rows[:, 0] == frame], pred_rows[pred_rows[:, 0] == frame]
        for row in g:
            pairs.setdefault(int(row[1]), [])
        if not len(p):
            continue
        overlap = _iou(g[:, 2:6], p[:, 2:6]) * (g[:, None, 7] == p[None, :, 7])
        rows, cols = linear_sum_assignment(-overlap)
        for r, c in zip(rows, cols):
            if overlap[r, c] >= iou:
                pairs[int(g[r, 1])].append(int(p[c, 1]))
    total = len(gt_rows)
    matched = sum(map(len, pairs.values()))
    dominant = [np.bincount(ids).max() if ids else 0 for ids in pairs.values()]
    lengths = {tid: int((gt_rows[:, 1] == tid).sum()) for tid in pairs}
    long = [tid for tid in pairs if lengths[tid] >= 5]
    mostly = sum(1 for tid, d in zip(pairs, dominant) if tid in long and d >= 0.8 * lengths[tid])
    return {"matched": matched / total, "id_recall": sum(dominant) / total,
            "switches": sum(int(np.sum(np.diff(ids) != 0)) for ids in pairs.values() if len(ids) > 1),
            "mostly_one_id": mostly / max(len(long), 1), "true_tracks": len(pairs)}


def track_rows(tracker_cfg: dict, frames: list[Detections]) -> tuple[np.ndarray, float]:
    """VisDrone-MOT rows of one sequence tracked from per-frame detections; ms per frame."""
    tracker = build_tracker(tracker_cfg)
    tracker.reset()
    rows, seconds = [], 0.0
    for k, dets in enumerate(frames, start=1):
        t0 = time.perf_counter()
        tracked = tracker.update(dets)
        seconds += time.perf_counter() - t0
        xywh = np.c_[tracked.boxes[:, :2], tracked.boxes[:, 2:] - tracked.boxes[:, :2]]
        rows.append(np.c_[np.full(len(tracked), k), tracked.ids, xywh, tracked.scores, tracked.labels,
                          -np.ones((len(tracked), 2))])
    return np.concatenate(rows) if rows else np.zeros((0, 10)), 1e3 * seconds / max(len(frames), 1)


def synthetic_case(seed: int, sequences: int, frames: int, size: tuple[int, int]):
    """Per sequence: its ground-truth rows and its noisy detections per frame."""
    cases = []
    for index in range(1, sequences + 1):
        rng = np.random.default_rng([seed, index])
        gts, dets = [], []
        for _, _, rows in synth_sequence(seed, index, frames, *size):
            gts.append(rows)
            dets.append(noisy_detections(rows, rng, size=size))
        cases.append((np.concatenate(gts), dets))
    return cases


def score(tracker_cfg: dict, cases) -> dict:
    """id consistency over all sequences (box-weighted) and ms per frame."""
    results, ms = [], []
    for gt, dets in cases:
        pred, per_frame = track_rows(tracker_cfg, dets)
        results.append((len(gt_objects(gt)), id_consistency(gt, pred)))
        ms.append(per_frame)
    weight = sum(n for n, _ in results)
    out = {k: sum(n * r[k] for n, r in results) / weight for k in ("matched", "id_recall", "mostly_one_id")}
    out["switches"] = sum(r["switches"] for _, r in results)
    out["ms/frame"] = float(np.mean(ms))
    return out


MMDET_DEFAULTS = {  # mmdet 3.3's own defaults, in our settings' names
    "bytetrack": {"high": 0.6, "init": 0.7, "confirm_frames": 3},
    "ocsort": {"init": 0.7, "match_iou": 0.3},
}
SWEEPS = {  # ours (afmcli/tracking/*.py), mmdet's, and one setting moved from ours (README "Tracking")
    "bytetrack": [{}, MMDET_DEFAULTS["bytetrack"], {"high": 0.6}, {"init": 0.7}, {"confirm_frames": 3},
                  {"high": 0.4, "init": 0.4}, {"match_iou": 0.3}, {"low_match_iou": 0.3}, {"keep_lost": 10}],
    "ocsort": [{}, MMDET_DEFAULTS["ocsort"], {"match_iou": 0.3}, {"match_iou": 0.05}, {"init": 0.7},
               {"score": 0.4}, {"direction_weight": 0.0}, {"direction_weight": 0.4}, {"keep_lost": 10}],
}


def trackers_table(cases, console: Console) -> None:
    table = Table(title="trackers on ground-truth-derived detections (jitter 5%, 10% missed, 1 false box/frame)")
    for col in ("tracker", "settings", "matched", "id recall", "mostly one id", "id switches", "tracker ms/frame"):
        table.add_column(col, justify="left" if col in ("tracker", "settings") else "right")
    for name, sweeps in SWEEPS.items():
        for extra in sweeps:
            r = score({"type": name, **extra}, cases)
            label = "mmdet's defaults" if extra == MMDET_DEFAULTS[name] else \
                ", ".join(f"{k}={v}" for k, v in extra.items()) or "afm's defaults"
            table.add_row(name, label,
                          f"{r['matched']:.3f}", f"{r['id_recall']:.3f}", f"{r['mostly_one_id']:.3f}",
                          str(r["switches"]), f"{r['ms/frame']:.2f}")
    console.print(table)


def mot_table(cases, args, size, console: Console) -> None:
    """VisDrone2019-MOT's numbers (`afm evaluate --task mot`) of each tracker, afm's defaults
    and mmdet's, on the sweep's sequences written to disk (the same frames, by seed)."""
    from afmcli.data.synth_video import sequence_name
    from afmcli.data.visdrone_format import format_visdrone_lines
    from afmcli.evaluation.mot_loaders import evaluate_mot

    data = Path(args.work) / f"mot_seed{args.seed}_{args.sequences}x{args.frames}_{size[0]}x{size[1]}"
    if not data.is_dir():
        write_synth_sequences(data, args.sequences, args.frames, args.seed, *size, workers=1)
    table = Table(title="VisDrone2019-MOT protocol (afm evaluate --task mot) on the same detections")
    for col in ("tracker", "settings", "MOTA", "IDF1", "HOTA", "IDs", "FP", "FN", "MT", "ML"):
        table.add_column(col, justify="left" if col in ("tracker", "settings") else "right")
    for name in SWEEPS:
        for label, extra in (("afm's defaults", {}), ("mmdet's defaults", MMDET_DEFAULTS[name])):
            pred = data / "pred" / f"{name}_{label.split(chr(39))[0]}"
            pred.mkdir(parents=True, exist_ok=True)
            for index, (_, dets) in enumerate(cases, start=1):
                rows, _ = track_rows({"type": name, **extra}, dets)
                (pred / f"{sequence_name(index)}.txt").write_text(format_visdrone_lines(rows))
            o = evaluate_mot(data / "annotations", pred, data / "sequences").overall
            table.add_row(name, label, *(f"{o[k]:.1f}" for k in ("MOTA", "IDF1", "HOTA")),
                          *(str(int(o[k])) for k in ("IDs", "FP", "FN", "MT", "ML")))
    console.print(table)


def speed_table(cases, console: Console, repeats: int = 5) -> None:
    """Each tracker's ms per frame at its defaults, runs alternated, best of ``repeats`` (a
    shared machine's load only ever adds time)."""
    boxes = np.mean([len(d) for _, dets in cases for d in dets])
    best = {name: float("inf") for name in SWEEPS}
    for _ in range(repeats):
        for name in SWEEPS:
            best[name] = min(best[name], np.mean([track_rows({"type": name}, dets)[1] for _, dets in cases]))
    table = Table(title=f"tracker ms per frame, defaults, best of {repeats} alternated runs ({boxes:.0f} "
                        "detections a frame)")
    for col in ("tracker", "ms/frame", "frames/s", "vs bytetrack"):
        table.add_column(col, justify="right" if col != "tracker" else "left")
    for name, ms in best.items():
        table.add_row(name, f"{ms:.2f}", f"{1e3 / ms:.0f}", f"{ms / best['bytetrack']:.2f}x")
    console.print(table)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def long_sequence_tracks(seed: int, frames: int, size: tuple[int, int], window: int = 200, per_window: int = 60):
    """A steady crowd over ``frames``: each ``window`` frames, ``per_window`` new objects
    (afmcli.data.synth_video.plan_tracks) that come and go."""
    from dataclasses import replace

    from afmcli.data.synth_video import plan_tracks

    rng = np.random.default_rng([seed, 99])
    tracks = []
    for offset in range(0, frames, window):
        for t in plan_tracks(rng, window, *size, 1.0, objects=per_window, crossings=4):
            tracks.append(replace(t, id=len(tracks) + 1, start=t.start + offset,
                                  stop=(t.stop[0] + offset, t.stop[1] + offset)))
    return tracks


def memory_table(seed: int, long_frames: int, size: tuple[int, int], console: Console) -> None:
    """ByteTrack over one long sequence of ground-truth-derived detections (no pixels): the
    process's peak RSS and the tracks the tracker holds at checkpoints."""
    tracks = long_sequence_tracks(seed, long_frames, size)
    tracker = build_tracker({"type": "bytetrack"})
    det_rng = np.random.default_rng(0)
    table = Table(title=f"memory over one long sequence ({len(tracks)} objects, ByteTrack)")
    for col in ("frames", "peak RSS MB", "tracks held", "boxes this frame", "tracker ms/frame"):
        table.add_column(col, justify="right")
    checkpoints = sorted({100, 500, 1000, long_frames // 2, long_frames})
    seconds, since = 0.0, 0
    for frame in range(1, long_frames + 1):
        rows = []
        for t in tracks:
            if t.start <= frame:
                x1, y1, x2, y2 = t.box(frame)
                if x1 >= 0 and y1 >= 0 and x2 <= size[0] and y2 <= size[1]:
                    rows.append([frame, t.id, x1, y1, x2 - x1, y2 - y1, 1, t.category, 0, 0])
        dets = noisy_detections(np.array(rows).reshape(-1, 10), det_rng, size=size)
        t0 = time.perf_counter()
        tracker.update(dets)
        seconds += time.perf_counter() - t0
        since += 1
        if frame in checkpoints:
            table.add_row(str(frame), f"{peak_rss_mb():.0f}", str(len(tracker._tracker.tracks)), str(len(dets)),
                          f"{1e3 * seconds / since:.2f}")
            seconds, since = 0.0, 0
    console.print(table)


def detector_table(args, size, console: Console) -> None:
    """The tiny TOOD (bench/bench_infer.py's training, data and SAHI calls) over the sequences'
    frames by afm's path and by SAHI, each followed by ByteTrack."""
    import cv2

    import afmcli

    spec = importlib.util.spec_from_file_location("bench_infer", ROOT / "bench" / "bench_infer.py")
    bench_infer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_infer)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bench_infer.make_data(work, 1, (512, 512))
    ckpt = bench_infer.train(work, args.train_iters, "cpu")
    data = work / "sequences"
    if not data.is_dir():
        write_synth_sequences(data, args.sequences, args.frames, args.seed, *size, workers=1)
    model = afmcli.load_model(bench_infer.CONFIG, ckpt)
    sahi = bench_infer.sahi_model(ckpt, args)
    gts = {p.stem: np.loadtxt(p, delimiter=",", ndmin=2) for p in sorted((data / "annotations").glob("*.txt"))}
    frames = {seq: [cv2.imread(str(p)) for p in sorted((data / "sequences" / seq).glob("*.jpg"))] for seq in gts}
    table = Table(title=f"tiny TOOD ({args.train_iters} steps) + ByteTrack, {len(gts)} synthetic sequences x "
                        f"{args.frames} frames {size[0]}x{size[1]}, --slice {args.slice}")
    for col in ("detections", "ByteTrack", "frames/s (detector)", "tracker ms/frame", "matched", "id recall",
                "mostly one id", "id switches"):
        table.add_column(col, justify="left" if col in ("detections", "ByteTrack") else "right")
    runs = {"afm infer's path (afmcli.predict)": lambda img: bench_infer.ours_one(model, img, args, 8),
            "SAHI get_sliced_prediction": lambda img: bench_infer.sahi_one(sahi, img, args)}
    # This briefly trained detector finds the objects (recall ~1 at IoU 0.5) but scores them
    # 0.05 to 0.5: the second tracker row sets the thresholds to that scale.
    settings = {"defaults": {}, "high=0.15, low=0.05, init=0.15": {"high": 0.15, "low": 0.05, "init": 0.15}}
    for name, detect in runs.items():
        per_seq, seconds, count = {}, 0.0, 0
        for seq, images in frames.items():
            t0 = time.perf_counter()
            per_seq[seq] = [detect(img) for img in images]
            seconds += time.perf_counter() - t0
            count += len(images)
        for label, extra in settings.items():
            results = [(gts[s], *track_rows({"type": "bytetrack", **extra}, d)) for s, d in per_seq.items()]
            checks = [id_consistency(g, p) for g, p, _ in results]
            n = [len(gt_objects(g)) for g, _, _ in results]
            table.add_row(name, label, f"{count / seconds:.2f}", f"{np.mean([ms for _, _, ms in results]):.2f}",
                          f"{np.average([c['matched'] for c in checks], weights=n):.3f}",
                          f"{np.average([c['id_recall'] for c in checks], weights=n):.3f}",
                          f"{np.average([c['mostly_one_id'] for c in checks], weights=n):.3f}",
                          str(sum(c["switches"] for c in checks)))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-frames", type=int, default=3000)
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--slice", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--score-thr", type=float, default=0.01)
    parser.add_argument("--work", default="/tmp/afm_bench_infer", help="shared with bench_infer.py: its trained "
                        "tiny TOOD is reused")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-detector", action="store_true")
    parser.add_argument("--only-speed", action="store_true", help="only the trackers' speed table")
    parser.add_argument("--only-detector", action="store_true", help="only the detector table")
    parser.add_argument("--only-mot", action="store_true", help="only the evaluator's table")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    console = Console(width=160)
    import torch

    torch.set_num_threads(1)
    if args.only_detector:
        detector_table(args, size, console)
        return
    cases = synthetic_case(args.seed, args.sequences, args.frames, size)
    if args.only_mot:
        mot_table(cases, args, size, console)
        return
    if not args.only_speed:
        trackers_table(cases, console)
        mot_table(cases, args, size, console)
    speed_table(cases, console)
    if args.only_speed:
        return
    memory_table(args.seed, args.long_frames, size, console)
    if not args.skip_detector:
        detector_table(args, size, console)


if __name__ == "__main__":
    main()
