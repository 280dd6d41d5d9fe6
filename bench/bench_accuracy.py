"""Equal-budget accuracy: TOOD and AFMNet trained with the same schedule on the same images,
then evaluated on the same held-out images. One run, side by side.

Every step is the real `afm` command (synth, convert-visdrone, train, infer, evaluate).

    .venv/bin/python bench/bench_accuracy.py                  # tiny configs, 64/16 images, 512x384, CPU
    python3 bench/bench_accuracy.py --full --device cuda:0 --train-images 400 --val-images 50 \\
        --size 1360x765 --epochs 12                          # R50 configs at VisDrone scale (GPU)
    .venv/bin/python bench/bench_accuracy.py --real --preset quick   # real VisDrone, ~15 min on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_accuracy.py --real --preset full --jobs 2  # ~45 min, 2 cores

--full trains the R50 configs from scratch (no ImageNet or COCO weights: none can be
downloaded on the GPU machine), so its absolute AP is low; the comparison is the point.

--real uses the real VisDrone2019-DET train images of ../shared/data/visdrone-real/ (beside
the checkout; AFM_SHARED moves it): split by sequence (every 5th sequence, sorted, is
validation: about 80/20), linked (never copied) into the official layout under --work.
Both models train on the sliced crops of the train part (`convert-visdrone --slice`) and
are evaluated twice on the full validation images: full-image inference alone, and sliced
inference (tiles plus the full image, fused: `afm infer`'s default).

--models picks the rows: TOOD and AFMNet by default; with the tiny configs also the per-branch
ablation of configs/AFM/ablation/ (CFPN, CFPN+HD, CFPN+HD+FPD, CFPN+HD+FPD+AFFM: AFMNet's
config with branches set to None). --jobs trains them side by side (one process each, its log
in WORK/NAME/log.txt), one per core: a tiny model keeps one core busy and leaves a GPU mostly idle.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_accuracy.py --real --preset full --jobs 2 \
        --models CFPN CFPN+HD+FPD+AFFM       # two ablation rows on 2 cores (docs/architecture.md)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from afmcli.engine.demo import last_checkpoint, make_synthetic_split, run_step  # noqa: E402
from afmcli.io import read_json, write_json  # noqa: E402

# name -> (config, --cfg-options). The ablation rows are configs/AFM/ablation/'s steps on the
# tiny AFMNet (the last step, + IRFI, is AFMNet itself).
TINY_AFMNET = 'configs/AFM/afmnet_tiny_synth.py'
TINY = {'TOOD': ('configs/AFM/tood_tiny_synth.py', []),
        'AFMNet': (TINY_AFMNET, []),
        'CFPN': (TINY_AFMNET, ['model.p2_neck=None', 'model.mask_estimator=None', 'model.affm=None',
                               'model.irfi=None', 'model.hd_head=None']),
        'CFPN+HD': (TINY_AFMNET, ['model.mask_estimator=None', 'model.affm=None', 'model.irfi=None']),
        'CFPN+HD+FPD': (TINY_AFMNET, ['model.affm=None', 'model.irfi=None']),
        'CFPN+HD+FPD+AFFM': (TINY_AFMNET, ['model.irfi=None'])}
FULL = {'TOOD': ('configs/AFM/tood_r50_visdrone.py', []),
        'AFMNet': ('configs/AFM/AFMNet-tood_r50_k13.py', [])}
COLUMNS = [('coco', 'AP'), ('coco', 'AP50'), ('coco', 'AP_small'), ('coco', 'AP_tiny'),
           ('visdrone', 'AP'), ('visdrone', 'AP50')]
REAL = Path(os.environ.get('AFM_SHARED', ROOT.parent / 'shared')) / 'data' / 'visdrone-real' / 'VisDrone2019-DET-train'
# Real-data presets: images taken from each part (evenly over its sorted files; None = all),
# crop size, epochs, --cfg-options for both models. 'quick' takes about 15 minutes on a busy
# 2-core box (one thread each), 'full' (all 257 / 67 images, 3,135 crops) about 45 with
# --jobs 2. 'gpu' is sized for one 9-minute call on the lent GPU machine (130 train images:
# the device call carries at most 64 MiB), data loaded by worker processes.
PRESETS = dict(quick=dict(train_images=24, val_images=8, slice=512, epochs=2, options=[]),
               full=dict(train_images=None, val_images=None, slice=512, epochs=2, options=[]),
               gpu=dict(train_images=130, val_images=None, slice=512, epochs=4,
                        options=['train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True']))


def fmt(value: float | None, spec: str) -> str:
    """A metric the evaluation could not compute (no ground truth in its range) is None."""
    return '-' if value is None else format(value, spec)


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def sequence_split(names: list[str], val_every: int = 5) -> tuple[list[str], list[str]]:
    """(train, val) file names: sequences (a name's first 7 characters), sorted, every
    `val_every`-th (the last of each group) to validation, so no sequence is in both."""
    sequences = sorted({name[:7] for name in names})
    val = {seq for i, seq in enumerate(sequences) if i % val_every == val_every - 1}
    return [n for n in sorted(names) if n[:7] not in val], [n for n in sorted(names) if n[:7] in val]


def evenly(names: list[str], count: int | None) -> list[str]:
    """`count` names spread evenly over the sorted list (all when None or more than there are)."""
    if count is None or count >= len(names):
        return names
    return [names[i * len(names) // count] for i in range(count)]


def real_parts(src: Path, train_images: int | None, val_images: int | None) -> dict[str, list[str]]:
    """{'train': names, 'val': names} of the real images a preset takes. The label files name
    the set, so a copy holding only these images (as the GPU call carries) splits the same way."""
    names = sorted(p.with_suffix('.jpg').name for p in (src / 'annotations').glob('*.txt'))
    if not names:
        raise SystemExit(f'bench_accuracy: no real labels in {src / "annotations"} (set AFM_SHARED)')
    train, val = sequence_split(names)
    return dict(train=evenly(train, train_images), val=evenly(val, val_images))


def make_real_split(src: Path, out: Path, train_images: int | None, val_images: int | None,
                    slice_size: int) -> tuple[Path, dict]:
    """Link the real images into train/val official-layout folders, convert (train sliced)."""
    parts = real_parts(src, train_images, val_images)
    data = out / 'Datasets'
    for split, files in parts.items():
        raw = out / 'raw' / f'VisDrone2019-DET-{split}'
        for sub in ('images', 'annotations'):
            (raw / sub).mkdir(parents=True, exist_ok=True)
            for stale in (raw / sub).iterdir():
                stale.unlink()
        for name in files:
            (raw / 'images' / name).symlink_to(src / 'images' / name)
            txt = Path(name).with_suffix('.txt').name
            (raw / 'annotations' / txt).symlink_to(src / 'annotations' / txt)
        run_step(['convert-visdrone', str(raw), str(data), '--split', split,
                  *(['--slice', str(slice_size)] if split == 'train' else [])])
    crops = len(read_json(data / 'labels' / 'annotations' / 'train_sliced_labels.json')['images'])
    return data, dict(train_images=len(parts['train']), val_images=len(parts['val']), train_crops=crops,
                      train_sequences=len({n[:7] for n in parts['train']}),
                      val_sequences=len({n[:7] for n in parts['val']}))


def train_and_evaluate(name: str, config: str, model_options: list[str], data: Path, work: Path,
                       args) -> dict:
    """Train, infer on the val images, evaluate; returns {view: metrics} per inference mode."""
    ann = data / 'labels' / 'annotations' / 'val_labels.json'
    options = list(model_options) + list(args.options)
    if args.epochs is not None:
        options += [f'train_cfg.max_epochs={args.epochs}', f'param_scheduler.1.end={args.epochs}']
    if args.full:
        options += ['load_from=None', 'model.backbone.init_cfg=None']
    if args.real:  # the crops, and no validation during training (the bench evaluates after)
        options += ['train_dataloader.dataset.ann_file=labels/annotations/train_sliced_labels.json',
                    'train_dataloader.dataset.data_prefix.img=images/train_sliced/',
                    'train_cfg.val_interval=1000']
    work_dir, infer_dir = work / name / 'work_dir', work / name / 'infer'
    train_s = run_step(['train', str(ROOT / config), '--work-dir', str(work_dir), '--data-root', str(data),
                        *(arg for option in options for arg in ('--cfg-options', option))])
    slices = ['--slice', str(args.slice), '--overlap', '0.25'] if args.real else ['--no-slices']
    # The config as trained: the one the Runner wrote into the work dir, --cfg-options applied
    # (an ablation row's branches set to None must match its checkpoint).
    trained_config = work_dir / Path(config).name
    run_step(['infer', str(trained_config), str(last_checkpoint(work_dir)), str(ann), '--out', str(infer_dir),
              *slices, '--device', args.device, '--overwrite'])  # a rerun retrains: a new checkpoint
    modes = dict(full=infer_dir / 'sources' / 'full.json', sliced=infer_dir / 'predictions.json') \
        if args.real else dict(full=infer_dir / 'predictions.json')
    out = dict(config=config, options=options, train_s=train_s)
    for mode, pred in modes.items():
        metrics_json = work / name / f'metrics_{mode}.json'
        run_step(['evaluate', '--gt', str(ann), '--pred', str(pred), '--json', str(metrics_json)])
        out[mode] = read_json(metrics_json)
    return out


def train_and_evaluate_logged(name: str, config: str, model_options: list[str], data: Path, work: Path,
                              args) -> dict:
    """train_and_evaluate in a worker process of --jobs, its output in WORK/NAME/log.txt and
    its result in WORK/NAME/result.json (kept when another job fails or the run is cut off)."""
    (work / name).mkdir(parents=True, exist_ok=True)
    with open(work / name / 'log.txt', 'w') as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        result = train_and_evaluate(name, config, model_options, data, work, args)
    write_json(work / name / 'result.json', result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--full', action='store_true', help='the R50 configs instead of the tiny ones')
    parser.add_argument('--real', action='store_true', help=f'real VisDrone images ({REAL})')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='quick',
                        help='with --real: images, crop size and epochs (see PRESETS)')
    parser.add_argument('--train-images', type=int, help="default 64 synthetic, or the --real preset's")
    parser.add_argument('--val-images', type=int, help="default 16 synthetic, or the --real preset's")
    parser.add_argument('--size', default='512x384', help='WxH of the synthetic images')
    parser.add_argument('--epochs', type=int, help="the same for both (default: each config's own; "
                                                    "with --real the preset's)")
    parser.add_argument('--device', default='cpu', help='for inference; training uses CUDA when present')
    parser.add_argument('--work', type=Path, default=Path('/tmp/afm_bench_accuracy'))
    parser.add_argument('--models', nargs='+', default=['TOOD', 'AFMNet'], metavar='NAME',
                        help=f'rows to train, in order (tiny: {", ".join(TINY)})')
    parser.add_argument('--jobs', type=int, default=1, help='models trained side by side (processes)')
    args = parser.parse_args()
    configs = FULL if args.full else TINY
    unknown = [name for name in args.models if name not in configs]
    if unknown:
        parser.error(f'--models: unknown {", ".join(unknown)} (choose from {", ".join(configs)})')
    args.options = []

    if args.real:
        preset = PRESETS[args.preset]
        args.epochs = args.epochs or preset['epochs']
        args.slice, args.options = preset['slice'], preset['options']
        data, about = make_real_split(REAL, args.work, args.train_images or preset['train_images'],
                                      args.val_images or preset['val_images'], args.slice)
        title = (f"Equal budget, real VisDrone ({args.preset}): {about['train_images']} train images "
                 f"({about['train_sequences']} sequences, {about['train_crops']} crops of {args.slice}) / "
                 f"{about['val_images']} val images ({about['val_sequences']} sequences), epochs {args.epochs}")
    else:
        width, height = map(int, args.size.split('x'))
        args.train_images, args.val_images = args.train_images or 64, args.val_images or 16
        data, _ = make_synthetic_split(args.work, args.train_images, args.val_images, width, height)
        about = {}
        title = (f"Equal budget: {args.train_images} train / {args.val_images} val synthetic images, "
                 f"{args.size}, epochs {args.epochs or 'per config'}")
    if args.jobs > 1:  # spawn: CUDA cannot be used in a forked child
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context('spawn')) as pool:
            futures = {name: pool.submit(train_and_evaluate_logged, name, *configs[name], data, args.work, args)
                       for name in args.models}
            results = {name: future.result() for name, future in futures.items()}
    else:
        results = {name: train_and_evaluate(name, *configs[name], data, args.work, args) for name in args.models}
    modes = ('full', 'sliced') if args.real else ('full',)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ['model', 'inference', 'train s', *(f'{view} {key}' for view, key in COLUMNS)]:
        table.add_column(col, justify='right')
    tood, afm = results.get('TOOD'), results.get('AFMNet')
    for mode in modes:
        for name, r in results.items():
            table.add_row(name, mode, f"{r['train_s']:.0f}", *(fmt(r[mode][v][k], '.2f') for v, k in COLUMNS))
        if tood and afm:
            table.add_row('AFMNet vs TOOD', mode, f"{afm['train_s'] / tood['train_s']:.2f}x",
                          *(fmt(difference(afm[mode][v][k], tood[mode][v][k]), '+.2f') for v, k in COLUMNS))
    Console(width=160).print(table)
    write_json(args.work / 'results.json', dict(settings=vars(args) | dict(work=str(args.work)), data=about,
                                                results=results))
    print(json.dumps({f'{name}/{mode}': {f'{v}/{k}': None if r[mode][v][k] is None else round(r[mode][v][k], 2)
                                         for v, k in COLUMNS}
                      for mode in modes for name, r in results.items()}))


if __name__ == '__main__':
    main()
