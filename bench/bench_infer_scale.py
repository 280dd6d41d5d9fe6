"""`afm infer` at scale on CPU: end to end against SAHI, --workers, 2 ranks, peak memory.

    .venv/bin/python bench/bench_infer_scale.py [--images 8] [--size 1600x1000] [--slice 512]
        [--batch-size 8] [--workers 2] [--rss-counts 200 2000] [--work /tmp/afm_bench_infer]

In one run, with the tiny TOOD that bench/bench_infer.py trains (cached in --work):
1. files to files, same model, tiles (SAHI placement), full pass and NMS 0.6:
   SAHI (cv2.imread + get_sliced_prediction per file) against `afm infer` at
   --batch-size with no workers and with --workers (decoding, tiling and the test
   pipeline in worker processes). Ours includes writing every output file; model
   loading is left out of both.
2. 2-rank scaling: the same images through `afm infer` as one process (1 thread, and
   all cores) and as two gloo ranks under torchrun (one thread each): wall time of the
   command, and afm's own seconds (model load included, interpreter start not).
3. Peak RSS of `afm infer` (its own process, full-image pass at a 128 px test scale)
   over --rss-counts small images (128x96, 200 distinct synth images hard-linked
   under more names): streaming keeps it flat.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import CONFIG, afm_infer_files, make_data, quiet, sahi_model, sahi_one, train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG_128 = ROOT / "tests" / "fixtures" / "tiny_tood_128.py"  # same model, 128 px test scale


def afm_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "afmcli", "infer", str(CONFIG), *map(str, args)]


def afm_seconds(stdout: str) -> float:
    """The `seconds` row of afm infer's table."""
    return float(re.findall(r"seconds\D*([\d.]+)", stdout)[-1])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def rss_child(source: Path, out: Path, ckpt: Path) -> None:
    """Run afm infer in this process and print its peak RSS (MiB)."""
    from afmcli.inference.run import InferSettings, run_inference

    run_inference(CONFIG_128, ckpt, source, out, InferSettings(slices=False, max_per_img=500), overwrite=True)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def small_images(work: Path, counts: list[int]) -> dict[int, Path]:
    """Folders of ``n`` small images for each count (hard links to 200 synth images)."""
    base = work / "rss_base"
    if not (base / "images").is_dir():
        quiet("synth", base, "--split", "val", "--images", 200, "--width", 128, "--height", 96, "--seed", 3)
    files = sorted((base / "images").iterdir())
    folders = {}
    for n in counts:
        folder = work / f"rss_{n}"
        if not folder.is_dir():
            folder.mkdir()
            for k in range(n):
                os.link(files[k % len(files)], folder / f"{k:06d}{files[0].suffix}")
        folders[n] = folder
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--slice", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--score-thr", type=float, default=0.01)
    parser.add_argument("--rss-counts", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("/tmp/afm_bench_infer"))
    parser.add_argument("--rounds", type=int, default=2, help="files-to-files runs of each pipeline, in turn; "
                        "the fastest counts (other load on the machine only slows a run down)")
    parser.add_argument("--sections", nargs="+", choices=("speed", "ranks", "rss"), default=["speed", "ranks", "rss"])
    parser.add_argument("--rss-child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child)
    args.device = "cpu"
    args.work.mkdir(parents=True, exist_ok=True)
    make_data(args.work, args.images, tuple(int(v) for v in args.size.split("x")))
    ckpt = train(args.work, args.train_iters)
    val = args.work / "Datasets" / "images" / "val"
    files = sorted(val.iterdir())
    n = len(files)
    console = Console(width=160)

    # 1. end to end against SAHI, in turns
    def sahi_files() -> float:
        start = time.perf_counter()
        for path in files:
            sahi_one(sahi, cv2.imread(str(path)), args)
        return time.perf_counter() - start

    if "speed" in args.sections:
        sahi = sahi_model(ckpt, args)
        sahi_one(sahi, cv2.imread(str(files[0])), args)  # warm-up
        pipelines = {"SAHI (imread + get_sliced_prediction)": sahi_files}
        for workers in (0, args.workers):
            bench_args = argparse.Namespace(**{**vars(args), "workers": workers})
            pipelines[f"afm infer, batch {args.batch_size}, --workers {workers}"] = \
                lambda a=bench_args: afm_infer_files(ckpt, a, args.batch_size)[0]
        times = {name: [] for name in pipelines}
        for _ in range(args.rounds):
            for name, run in pipelines.items():
                times[name].append(run())
        best = {name: min(t) for name, t in times.items()}
        t_sahi = next(iter(best.values()))
        table = Table(title=f"Files to files: {n} images {args.size}, slice {args.slice}, overlap {args.overlap}, "
                            f"full pass, NMS 0.6 (CPU, {torch.get_num_threads()} threads, best of {args.rounds})")
        for col in ("pipeline", "seconds", "images/s", "speed vs SAHI"):
            table.add_column(col, justify="right")
        for name, sec in best.items():
            table.add_row(name, f"{sec:.2f}", f"{n / sec:.3f}", f"{t_sahi / sec:.2f}x")
        console.print(table)

    # 2. two ranks on gloo against one process
    if "ranks" in args.sections:
        run_ranks(args, ckpt, val, n, console)
    if "rss" in args.sections:
        run_rss(args, ckpt, console)


def run_ranks(args, ckpt: Path, val: Path, n: int, console: Console) -> None:
    common = [ckpt, val, "--slice", args.slice, "--batch-size", args.batch_size, "--overwrite"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = {}
    for threads in sorted({1, os.cpu_count()}):
        runs[f"1 process, {threads} thread(s)"] = run_timed(
            afm_cmd(*common, "--out", args.work / f"ranks1_t{threads}"), {**env, "OMP_NUM_THREADS": str(threads)})
    runs["2 gloo ranks (torchrun), 1 thread each"] = run_timed(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "afmcli", "infer", str(CONFIG), *map(str, common), "--out", str(args.work / "ranks2"),
         "--launcher", "pytorch"], {**env, "OMP_NUM_THREADS": "1"})
    # Same threads per process, same bytes (float sums change with the thread count).
    same = all((args.work / "ranks1_t1" / f).read_bytes() == (args.work / "ranks2" / f).read_bytes()
               for f in ("predictions.json", "sources/slices.json", "sources/full.json"))
    table = Table(title=f"Ranks: {n} images, batch {args.batch_size}, {os.cpu_count()} cores "
                        f"(2 ranks byte-identical to 1 process, 1 thread: {same})")
    for col in ("run", "command wall s", "afm seconds", "images/s (afm seconds)", "vs 1 process, 1 thread"):
        table.add_column(col, justify="right")
    base = afm_seconds(next(iter(runs.values()))[1])
    for name, (wall, stdout) in runs.items():
        sec = afm_seconds(stdout)
        table.add_row(name, f"{wall:.1f}", f"{sec:.1f}", f"{n / sec:.3f}", f"{base / sec:.2f}x")
    console.print(table)


def run_rss(args, ckpt: Path, console: Console) -> None:
    """3. peak RSS against image count."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    table = Table(title="Peak RSS of afm infer (full-image pass, 128x96 images at 128 px, own process)")
    for col in ("images", "peak RSS MiB", "seconds"):
        table.add_column(col, justify="right")
    for count, folder in small_images(args.work, args.rss_counts).items():
        wall, out = run_timed([sys.executable, __file__, "--rss-child", str(folder), str(args.work / f"rss_out_{count}"),
                               str(ckpt)], env)
        table.add_row(str(count), f"{float(out.split()[-1]):.0f}", f"{wall:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
