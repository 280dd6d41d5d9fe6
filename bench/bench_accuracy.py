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

--staged is the paper's own setting (AFMNet starts from a trained TOOD): stage 1 trains TOOD
alone for --stage1-epochs; stage 2 trains every --models row from that checkpoint (load_from;
AFMNet's HD head starts from the main head's weights, hd_init_from_main) for --epochs, side by
side, so "TOOD" in stage 2 is TOOD trained on for the same schedule. Stage 1 is kept in
WORK/stage1 and reused by later runs with the same data and stage-1 epochs (--stages 2); AFMNet
row is also scored as VARIANTS: each head alone (model.test_heads main / hd) and round 3's
inference switches, on its checkpoint (--variants picks them; --stage1-from reuses the stage 1
of another work dir, for a run from another tree).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_accuracy.py --real --preset full --staged --jobs 2

--max-time gives every training of the run a wall-clock limit (`afm train --max-time`: it ends
at the last epoch forecast to fit; --epochs is then the schedule's length, an upper bound).
Every epoch's checkpoint is kept, and where TOOD reached more epochs than AFMNet, TOOD's
checkpoint at AFMNet's epoch is scored too ("TOOD at AFMNet's epochs": the same schedule, the
same epochs) and the comparison row uses it. The "epochs" column says what each row trained.

--seeds trains every row once per seed (`randomness.seed`; rows "NAME sSEED") from the same
stage 1, and adds a table of each model's mean over the seeds with its spread (half the range:
with two seeds, each run lies that far from the mean), the epochs its runs reached, AFMNet's mean
difference from TOOD (from "TOOD at AFMNet's epochs", seed by seed, where a --max-time run let TOOD
go further) and AFMNet's training time over TOOD's.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_accuracy.py --staged --seeds 0 1 --epochs 4 \
        --models TOOD AFMNet CFPN CFPN+FPD CFPN+HD+FPD CFPN+HD+FPD+AFFM --jobs 2   # round 4's rows

Seeds of one experiment (the same stage 1) may come from several runs: --pooled reads their
results.json and prints each model's mean and sample sd over all its seeds, and its difference
from TOOD of the same seed (the paired difference: the seed's data order and the shared parts'
start are the same for both), with the count of seeds where it is above. --rescore scores the
--variants (each head alone, ...) of a finished run's rows on their checkpoints, into its file.

    .venv/bin/python bench/bench_accuracy.py --pooled /tmp/a/results.json /tmp/b/results.json
    .venv/bin/python bench/bench_accuracy.py --rescore /tmp/a/results.json --variants 'main head' 'HD head'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from afmcli.cli import app  # noqa: E402
from afmcli.data.layout import DatasetPaths  # noqa: E402
from afmcli.engine.demo import last_checkpoint, make_synthetic_split, run_step  # noqa: E402
from afmcli.io import atomic_path, read_json, write_json  # noqa: E402

# name -> (config, --cfg-options). The ablation rows are configs/AFM/ablation/'s steps on the
# tiny AFMNet (the last step, + IRFI, is AFMNet itself).
TINY_AFMNET = 'configs/AFM/afmnet_tiny_synth.py'
MASK_W025 = ['model.mask_estimator.loss_mask.loss_weight=0.25', 'model.mask_estimator.loss_dice.loss_weight=0.25']
TINY = {'TOOD': ('configs/AFM/tood_tiny_synth.py', []),
        'AFMNet': (TINY_AFMNET, []),
        'CFPN': (TINY_AFMNET, ['model.p2_neck=None', 'model.mask_estimator=None', 'model.affm=None',
                               'model.irfi=None', 'model.hd_head=None']),
        'CFPN+FPD': (TINY_AFMNET, ['model.p2_neck=None', 'model.affm=None', 'model.irfi=None',
                                   'model.hd_head=None']),
        'CFPN+HD': (TINY_AFMNET, ['model.mask_estimator=None', 'model.affm=None', 'model.irfi=None']),
        'CFPN+HD+FPD': (TINY_AFMNET, ['model.affm=None', 'model.irfi=None']),
        'CFPN+HD+FPD+AFFM': (TINY_AFMNET, ['model.irfi=None']),
        # CFPN in mmdet's FPN_CARAFE topology (round 4: the default is TOOD's topology)
        'AFMNet+FPN_CARAFE': ('configs/AFM/afmnet_tiny_synth_fpn_carafe.py', []),
        # round 3's training switches (docs/architecture.md), each alone on AFMNet
        'AFMNet+k_train8': (TINY_AFMNET, ['model.affm.topk_train=8']),
        'AFMNet+shared_tower': (TINY_AFMNET, ['model.hd_share_tower=True']),
        'AFMNet+hd_loss2': (TINY_AFMNET, ['model.hd_loss_weight=2.0']),
        # a 1-cell context margin: the HD head's cheaper variant on CPU (docs/benchmarks.md)
        'AFMNet+margin1': (TINY_AFMNET, ['model.affm.margin=1']),
        # the mask estimators' losses at a quarter weight (round 4: CFPN+FPD fell below CFPN)
        'CFPN+FPD+mask_w0.25': (TINY_AFMNET, ['model.p2_neck=None', 'model.affm=None', 'model.irfi=None',
                                              'model.hd_head=None', *MASK_W025]),
        'AFMNet+mask_w0.25': (TINY_AFMNET, MASK_W025)}
# --staged: the AFMNet row is also scored as each of these configs on top of the trained one
# (the same checkpoint): each head alone, and round 3's inference switches.
VARIANTS = {'main head': "model = dict(test_heads='main')",
            'HD head': "model = dict(test_heads='hd')",
            'merge by role': "model = dict(merge_cfg=dict(by_role=True, small_area=32 * 32))",
            'windows mask or main': "model = dict(affm=dict(test_score='mask_or_main'))"}
FULL = {'TOOD': ('configs/AFM/tood_r50_visdrone.py', []),
        'AFMNet': ('configs/AFM/AFMNet-tood_r50_k13.py', [])}
COLUMNS = [('coco', 'AP'), ('coco', 'AP50'), ('coco', 'AP_small'), ('coco', 'AP_tiny'),
           ('visdrone', 'AP'), ('visdrone', 'AP50')]
# Absolute: the split's folders link to it (a relative AFM_SHARED would give broken links).
REAL = (Path(os.environ.get('AFM_SHARED', ROOT.parent / 'shared')) / 'data' / 'visdrone-real'
        / 'VisDrone2019-DET-train').resolve()
# Real-data presets: images taken from each part (evenly over its sorted files; None = all),
# crop size, epochs, --cfg-options for both models. 'quick' takes about 15 minutes on a busy
# 2-core box (one thread each), 'full' (all 257 / 67 images, 3,135 crops) about 45 with
# --jobs 2. 'gpu' is sized for one 9-minute call on the lent GPU machine (130 train images:
# the device call carries at most 64 MiB), data loaded by worker processes.
# stage1_epochs: --staged's TOOD pre-training.
PRESETS = dict(quick=dict(train_images=24, val_images=8, slice=512, epochs=2, stage1_epochs=2, options=[]),
               full=dict(train_images=None, val_images=None, slice=512, epochs=2, stage1_epochs=8, options=[]),
               gpu=dict(train_images=130, val_images=None, slice=512, epochs=4, stage1_epochs=12,
                        options=['train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True']))
STAGE1 = 'stage1'  # WORK/stage1: the TOOD that --staged starts from
EQUAL_EPOCHS = "TOOD at AFMNet's epochs"  # TOOD scored at AFMNet's last epoch (a --max-time run)


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
        run_step(app, ['convert-visdrone', str(raw), str(data), '--split', split,
                  *(['--slice', str(slice_size)] if split == 'train' else [])])
    crops = len(read_json(data / 'labels' / 'annotations' / 'train_sliced_labels.json')['images'])
    return data, dict(train_images=len(parts['train']), val_images=len(parts['val']), train_crops=crops,
                      train_sequences=len({n[:7] for n in parts['train']}),
                      val_sequences=len({n[:7] for n in parts['val']}))


def train_and_evaluate(name: str, config: str, model_options: list[str], data: Path, work: Path,
                       args, load_from: Path | None = None, epochs: int | None = None) -> dict:
    """Train (from `load_from` when given), infer on the val images, evaluate; returns
    {mode: metrics} per inference mode, and for AFMNet rows of --staged each head alone."""
    ann = DatasetPaths(data, 'val').ann_file
    options = list(model_options) + list(args.options)
    epochs = epochs or args.epochs
    if epochs is not None:
        options += [f'train_cfg.max_epochs={epochs}', f'param_scheduler.1.end={epochs}']
    if args.full:
        options += ['load_from=None', 'model.backbone.init_cfg=None']
    if load_from is not None:
        options += [f'load_from={load_from}']
        if args.stage2_lr is not None:  # fine-tune below the rate stage 1 started from
            options += [f'optim_wrapper.optimizer.lr={args.stage2_lr}']
        if 'afmnet' in config.lower():
            options += ['model.hd_init_from_main=True']
    limit = []
    if args.max_time:  # keep every epoch: a row may be compared at another's last epoch
        limit = ['--max-time', args.max_time]
        options += ['default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1']
    if args.real:  # the crops, and no validation during training (the bench evaluates after)
        options += ['train_dataloader.dataset.ann_file=labels/annotations/train_sliced_labels.json',
                    'train_dataloader.dataset.data_prefix.img=images/train_sliced/',
                    'train_cfg.val_interval=1000']
    work_dir = work / name / 'work_dir'
    done = work / name / 'result.json'
    if done.is_file():  # a row this work dir finished before, trained as asked now: kept
        out = read_json(done)
        if out.get('config') == config and out.get('options') == options and Path(out['checkpoint']).is_file():
            print(f'{name}: reusing {done}')
            if args.staged:
                score_variants(name, out, ann, work, args)
                write_json(done, out)
            return out
    train_s = run_step(app, ['train', str(ROOT / config), '--work-dir', str(work_dir), '--data-root', str(data),
                        *limit, *(arg for option in options for arg in ('--cfg-options', option))])
    # The config as trained: the one the Runner wrote into the work dir, --cfg-options applied
    # (an ablation row's branches set to None must match its checkpoint).
    trained_config = work_dir / Path(config).name
    checkpoint = last_checkpoint(work_dir)
    out = dict(config=config, options=options, train_s=train_s, checkpoint=str(checkpoint),
               epochs=checkpoint_epoch(checkpoint), trained_config=str(trained_config))
    out.update(infer_and_evaluate(trained_config, checkpoint, ann, work / name, args))
    if args.staged:
        score_variants(name, out, ann, work, args)
    write_json(done, out)  # kept when another row fails or the run is cut off
    return out


def seed_of(name: str) -> tuple[str, int] | None:
    """(model, seed) of a --seeds row "NAME sSEED" (see `seed_rows`); None for other rows."""
    found = re.fullmatch(r'(.+) s(\d+)', name)
    return (found[1], int(found[2])) if found else None


def row_variants(name: str, variants: list[str]) -> list[str]:
    """The --variants that apply to the row ``name``: each head alone where it has an HD head,
    the switches of AFFM's windows and the merge where it has AFFM too (AFMNet's rows)."""
    model = (seed_of(name) or (name,))[0]
    afmnet = model.startswith('AFMNet')
    if not (afmnet or '+HD' in model):
        return []
    return [v for v in variants if v in ('main head', 'HD head') or afmnet or 'AFFM' in model]


def score_variants(name: str, out: dict, ann: Path, work: Path, args) -> None:
    """Score the row's checkpoint as each of its variants (the same weights) not scored yet: out['variants']."""
    trained_config = Path(out['trained_config'])
    for variant in row_variants(name, args.variants):
        if variant in out.get('variants', {}):
            continue
        index = list(VARIANTS).index(variant)
        derived = work / name / f'variant{index}.py'
        derived.write_text(f"_base_ = ['{trained_config.relative_to(work / name)}']\n{VARIANTS[variant]}\n")
        out.setdefault('variants', {})[variant] = infer_and_evaluate(derived, Path(out['checkpoint']), ann,
                                                                     work / name / f'variant{index}', args)


def seed_rows(models: list[str], seeds: list[int] | None) -> list[tuple[str, str, list[str]]]:
    """(row name, model, extra --cfg-options) of every training: one per model, or one per
    model and seed ("NAME sSEED", randomness.seed=SEED), seed by seed (with --jobs, the models
    of one seed train side by side, so their times compare under the same load)."""
    if not seeds:
        return [(model, model, []) for model in models]
    return [(f'{model} s{seed}', model, [f'randomness.seed={seed}']) for seed in seeds for model in models]


def seed_summary(results: dict, rows: list[tuple[str, str, list[str]]], modes) -> dict:
    """{model: {'runs': n, 'epochs': [...], 'train_s': mean, mode: {(view, key): (mean, spread)}}} over
    each model's seeds; spread is half the range (None where a run has no value); train_s is None
    for rows that did not train (TOOD scored at AFMNet's epochs)."""
    summary = {}
    for model in dict.fromkeys(m for _, m, _ in rows):
        runs = [results[name] for name, m, _ in rows if m == model and name in results]
        if not runs:
            continue
        times = [r['train_s'] for r in runs if r.get('train_s') is not None]
        out = summary[model] = dict(runs=len(runs), epochs=sorted({r.get('epochs') for r in runs} - {None}),
                                    train_s=sum(times) / len(times) if times else None)
        for mode in modes:
            out[mode] = {}
            for view, key in COLUMNS:
                values = [r[mode][view][key] for r in runs]
                out[mode][(view, key)] = (None, None) if None in values else \
                    (sum(values) / len(values), (max(values) - min(values)) / 2)
    return summary


def summary_as_json(summary: dict, modes) -> dict:
    """`seed_summary` with 'view/key' names for its (view, key) columns."""
    return {model: {name: {f'{v}/{k}': value for (v, k), value in part.items()} if name in modes else part
                    for name, part in out.items()} for model, out in summary.items()}


def print_seed_summary(summary: dict, modes, console) -> None:
    from rich.table import Table

    table = Table(title='Mean over seeds (\u00b1 half the range)')
    for col in ['model', 'inference', 'seeds', 'epochs', 'train s', *(f'{view} {key}' for view, key in COLUMNS)]:
        table.add_column(col, justify='right')
    # AFMNet against TOOD at the same epochs where a --max-time run let TOOD go further.
    peer = summary.get(EQUAL_EPOCHS, summary.get('TOOD'))
    for mode in modes:
        for model, out in summary.items():
            epochs = out['epochs']
            table.add_row(model, mode, str(out['runs']),
                          '-' if not epochs else f'{epochs[0]}' if len(epochs) == 1 else f'{epochs[0]}-{epochs[-1]}',
                          fmt(out['train_s'], '.0f'),
                          *('-' if m is None else f'{m:.2f} \u00b1{d:.2f}' for m, d in (out[mode][c] for c in COLUMNS)))
        if peer and 'AFMNet' in summary:
            table.add_row('AFMNet vs TOOD', mode, '', '', '',
                          *(fmt(difference(summary['AFMNet'][mode][c][0], peer[mode][c][0]), '+.2f') for c in COLUMNS))
    console.print(table)
    if 'TOOD' in summary and 'AFMNet' in summary:
        console.print(f"AFMNet / TOOD training time: {summary['AFMNet']['train_s'] / summary['TOOD']['train_s']:.2f}x")


def rescore(files: list[Path], args) -> None:
    """--rescore: a finished run's rows scored as their --variants, written into its results.json."""
    for file in files:
        record = read_json(file)
        settings = record['settings']
        args.real, args.staged = settings['real'], True
        args.slice = settings.get('slice', 512)
        work = Path(settings['work'])
        ann = DatasetPaths(work / 'Datasets', 'val').ann_file
        for name, result in record['results'].items():
            if 'trained_config' in result and row_variants(name, args.variants):
                print(f'{file}: {name}')
                score_variants(name, result, ann, work, args)
        write_json(file, record)


def pooled_runs(files: list[Path]) -> dict:
    """The seed rows ("NAME sSEED") of several runs' results.json, one dict; a row found twice
    must have the same numbers (training on the CPU is deterministic per seed), else the runs
    are not one experiment (another stage 1, data or code) and cannot be pooled."""
    pooled, origin = {}, {}
    for file in files:
        for name, result in read_json(file)['results'].items():
            if seed_of(name) is None:
                continue
            if name in pooled and pooled[name]['full'] != result['full']:
                raise SystemExit(f'bench_accuracy: {name} differs between {origin[name]} and {file}: '
                                 'not runs of one experiment')
            pooled[name], origin[name] = result, file
            model, seed = seed_of(name)
            for variant, metrics in result.get('variants', {}).items():
                pooled[f'{model}, {variant} s{seed}'] = metrics
    return pooled


def paired_summary(runs: dict, modes, reference: str = 'TOOD') -> dict:
    """{model: {'seeds': [...], mode: {(view, key): (mean, sd, diff_mean, diff_sd, wins)},
    'diffs': {mode: {(view, key): [...]}}}}: each model's mean and sample standard deviation over
    its seeds, and its difference from ``reference`` of the same seed (the same stage 1, data
    order and initialisation of the shared parts: the paired difference removes what the seed
    does to both), with the seeds where the model is above; 'diffs' are those differences."""
    by_model: dict[str, dict[int, dict]] = {}
    for name, result in runs.items():
        model, seed = seed_of(name)
        by_model.setdefault(model, {})[seed] = result
    ref = by_model.get(reference, {})

    def mean_sd(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values)
        return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0

    summary = {}
    for model, seeds in by_model.items():
        out = summary[model] = dict(seeds=sorted(seeds), diffs={})
        for mode in modes:
            out[mode], out['diffs'][mode] = {}, {}
            for view, key in COLUMNS:
                values = {seed: r[mode][view][key] for seed, r in seeds.items() if r[mode][view][key] is not None}
                if not values:
                    out[mode][(view, key)] = None
                    continue
                diffs = out['diffs'][mode][(view, key)] = [
                    v - ref[seed][mode][view][key] for seed, v in values.items()
                    if seed in ref and ref[seed][mode][view][key] is not None]
                cell = mean_sd(list(values.values()))
                out[mode][(view, key)] = (*cell, *(mean_sd(diffs) if diffs else (None, None)),
                                          f'{sum(d > 0 for d in diffs)}/{len(diffs)}' if diffs else '-')
    return summary


def print_paired_summary(summary: dict, modes, console, reference: str = 'TOOD') -> None:
    from rich.table import Table

    table = Table(title=f'Mean \u00b1 sd over seeds; below, the difference from {reference} of the same seed '
                        f'(mean \u00b1 sd, seeds above {reference})')
    for col in ['model', 'inference', 'seeds', *(f'{view} {key}' for view, key in COLUMNS)]:
        table.add_column(col, justify='right')
    for mode in modes:
        for model, out in summary.items():
            cells = [out[mode][c] for c in COLUMNS]
            table.add_row(model, mode, str(len(out['seeds'])),
                          *('-' if c is None else f'{c[0]:.2f} \u00b1{c[1]:.2f}' for c in cells))
            if model != reference:
                table.add_row('', f'- {reference}', '',
                              *('-' if c is None or c[2] is None else f'{c[2]:+.2f} \u00b1{c[3]:.2f} ({c[4]})'
                                for c in cells))
    console.print(table)


def plot_paired(summary: dict, modes, path: Path, reference: str = 'TOOD',
                keys=(('coco', 'AP'), ('coco', 'AP50'), ('coco', 'AP_tiny'))) -> None:
    """PNG: each model's difference from ``reference`` seed by seed (dots) and its mean (bar),
    one panel per metric and inference mode: where a row stands against the seeds' spread."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    models = [m for m in summary if m != reference]
    fig, axes = plt.subplots(len(modes), len(keys), figsize=(4.2 * len(keys), 0.45 * len(models) * len(modes) + 1.5),
                             squeeze=False, sharey=True)
    for row, mode in enumerate(modes):
        for col, (view, key) in enumerate(keys):
            ax = axes[row][col]
            for y, model in enumerate(models):
                diffs = summary[model]['diffs'][mode].get((view, key))
                if diffs:
                    mean = sum(diffs) / len(diffs)
                    ax.barh(y, mean, color='#2b5797' if mean > 0 else '#c0504d', alpha=0.35)
                    ax.plot(diffs, [y] * len(diffs), 'o', color='0.2', markersize=4)
            ax.axvline(0, color='0.3', linewidth=0.8)
            ax.set_title(f'{view} {key}, {mode}: minus {reference}', fontsize=9)
            ax.set_yticks(range(len(models)), models, fontsize=8)
            ax.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=110)
    plt.close(fig)


def checkpoint_epoch(checkpoint: Path) -> int | None:
    """N of an epoch_N.pth checkpoint (None for iteration-based ones)."""
    match = re.fullmatch(r'epoch_(\d+)\.pth', checkpoint.name)
    return int(match[1]) if match else None


def at_epochs(name: str, result: dict, epochs: int, data: Path, args) -> dict:
    """The trained row ``name`` scored at its checkpoint of epoch ``epochs`` (kept by --max-time)."""
    checkpoint = Path(result['checkpoint']).with_name(f'epoch_{epochs}.pth')
    if not checkpoint.is_file():
        raise SystemExit(f'bench_accuracy: {checkpoint} not found: {name} cannot be compared at {epochs} epochs')
    scored = infer_and_evaluate(Path(result['trained_config']), checkpoint, DatasetPaths(data, 'val').ann_file,
                                args.work / name / f'epoch_{epochs}', args)
    return scored | dict(config=result['config'], checkpoint=str(checkpoint), epochs=epochs, train_s=None)


def add_equal_epochs_row(results: dict, data: Path, args, suffixes=('',)) -> None:
    """Where TOOD trained more epochs than AFMNet (a --max-time run), add TOOD scored at
    AFMNet's last epoch as results["TOOD at AFMNet's epochs"], per seed with --seeds
    (``suffixes`` ' s0', ' s1', ...: each seed's TOOD against the same seed's AFMNet)."""
    for suffix in suffixes:
        tood, afm = results.get(f'TOOD{suffix}'), results.get(f'AFMNet{suffix}')
        if tood and afm and None not in (tood['epochs'], afm['epochs']) and tood['epochs'] > afm['epochs']:
            results[f'{EQUAL_EPOCHS}{suffix}'] = at_epochs(f'TOOD{suffix}', tood, afm['epochs'], data, args)


def infer_and_evaluate(config: Path, checkpoint: Path, ann: Path, work: Path, args) -> dict:
    """{mode: metrics}: full-image inference alone, and (--real) sliced inference."""
    infer_dir = work / 'infer'
    slices = ['--slice', str(args.slice), '--overlap', '0.25'] if args.real else ['--no-slices']
    run_step(app, ['infer', str(config), str(checkpoint), str(ann), '--out', str(infer_dir),
              *slices, '--device', args.device, '--overwrite'])  # a rerun retrains: a new checkpoint
    modes = dict(full=infer_dir / 'sources' / 'full.json', sliced=infer_dir / 'predictions.json') \
        if args.real else dict(full=infer_dir / 'predictions.json')
    out = {}
    for mode, pred in modes.items():
        metrics_json = work / f'metrics_{mode}.json'
        run_step(app, ['evaluate', '--gt', str(ann), '--pred', str(pred), '--json', str(metrics_json)])
        out[mode] = read_json(metrics_json)
    return out


def stage1(data: Path, about: dict, args) -> dict:
    """--staged's starting point: TOOD trained alone for --stage1-epochs, reused from WORK/stage1
    when an earlier run trained it on the same data for as many epochs."""
    done = (args.stage1_from or args.work / STAGE1) / 'result.json'
    key = dict(data=about, epochs=args.stage1_epochs, options=list(args.options), max_time=args.max_time)
    if done.is_file() and read_json(done).get('key') == key:
        print(f'stage 1: reusing {done}')
        return read_json(done)
    if 1 not in args.stages or args.stage1_from:
        raise SystemExit(f'bench_accuracy: --staged needs stage 1 in {done.parent} '
                         f'(trained on the same data for {args.stage1_epochs} epochs); run stage 1 first')
    result = train_and_evaluate(STAGE1, TINY['TOOD'][0] if not args.full else FULL['TOOD'][0], [], data,
                                args.work, args, epochs=args.stage1_epochs)
    result['key'] = key
    write_json(done, result)
    return result


def train_and_evaluate_logged(name: str, config: str, model_options: list[str], data: Path, work: Path,
                              args, load_from: Path | None = None) -> dict:
    """train_and_evaluate in a worker process of --jobs, its output in WORK/NAME/log.txt."""
    (work / name).mkdir(parents=True, exist_ok=True)
    with open(work / name / 'log.txt', 'a') as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        return train_and_evaluate(name, config, model_options, data, work, args, load_from)


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
    parser.add_argument('--staged', action='store_true',
                        help='stage 1: TOOD alone; stage 2: every row from its checkpoint (the paper\'s setting)')
    parser.add_argument('--stage1-epochs', type=int, help="--staged's TOOD pre-training (default: the preset's)")
    parser.add_argument('--stages', type=int, nargs='+', choices=(1, 2), default=[1, 2],
                        help='--staged: run only these stages (2 reuses stage 1 from --work)')
    parser.add_argument('--stage1-from', type=Path, help='--staged: the stage-1 folder to start from '
                                                          '(default WORK/stage1)')
    parser.add_argument('--stage2-lr', type=float,
                        help="--staged: stage 2's learning rate (default: the config's, as in stage 1)")
    parser.add_argument('--max-time', help="each training's wall-clock limit (afm train --max-time, e.g. 150s); "
                                           "--epochs is then an upper bound")
    parser.add_argument('--seeds', type=int, nargs='+', metavar='SEED',
                        help='train every row once per seed (randomness.seed), and summarise mean and spread')
    parser.add_argument('--variants', nargs='*', choices=sorted(VARIANTS), default=list(VARIANTS),
                        help='--staged: how the AFMNet row is also scored (none: --variants alone)')
    parser.add_argument('--pooled', nargs='+', type=Path, metavar='RESULTS_JSON',
                        help='train nothing: pool the seed rows of these runs (one stage 1) and print each '
                             'model against TOOD of the same seed')
    parser.add_argument('--reference', default='TOOD', metavar='NAME',
                        help="--pooled: the model each is compared with, seed by seed (default TOOD)")
    parser.add_argument('--plot', type=Path, metavar='PNG', help='--pooled: also draw the seed-by-seed differences')
    parser.add_argument('--rescore', nargs='+', type=Path, metavar='RESULTS_JSON',
                        help='train nothing: score the --variants of each row of these runs on its checkpoint '
                             '(added to the file)')
    args = parser.parse_args()
    if args.pooled:
        from rich.console import Console

        runs = pooled_runs(args.pooled)
        modes = ('full', 'sliced') if all('sliced' in r for r in runs.values()) else ('full',)
        summary = paired_summary(runs, modes, args.reference)
        print_paired_summary(summary, modes, Console(width=200), args.reference)
        if args.plot:
            plot_paired(summary, modes, args.plot, args.reference)
            print(f'wrote {args.plot}')
        return
    if args.rescore:
        rescore(args.rescore, args)
        return
    configs = FULL if args.full else TINY
    unknown = [name for name in args.models if name not in configs]
    if unknown:
        parser.error(f'--models: unknown {", ".join(unknown)} (choose from {", ".join(configs)})')
    args.options = []

    if args.real:
        preset = PRESETS[args.preset]
        args.epochs = args.epochs or preset['epochs']
        args.slice, args.options = preset['slice'], preset['options']
        args.stage1_epochs = args.stage1_epochs or preset['stage1_epochs']
        data, about = make_real_split(REAL, args.work, args.train_images or preset['train_images'],
                                      args.val_images or preset['val_images'], args.slice)
        title = (f"Equal budget, real VisDrone ({args.preset}): {about['train_images']} train images "
                 f"({about['train_sequences']} sequences, {about['train_crops']} crops of {args.slice}) / "
                 f"{about['val_images']} val images ({about['val_sequences']} sequences), epochs {args.epochs}")
    else:
        width, height = map(int, args.size.split('x'))
        args.train_images, args.val_images = args.train_images or 64, args.val_images or 16
        data, _ = make_synthetic_split(app, args.work, args.train_images, args.val_images, width, height)
        about = {}
        title = (f"Equal budget: {args.train_images} train / {args.val_images} val synthetic images, "
                 f"{args.size}, epochs {args.epochs or 'per config'}")
        args.stage1_epochs = args.stage1_epochs or 12
    start = None
    if args.staged:
        start = stage1(data, about, args)
        title += f" (stage 2, from TOOD trained {args.stage1_epochs} epochs)"
        if 2 not in args.stages:
            print(json.dumps({f'{STAGE1}/{mode}': start[mode] for mode in ('full', 'sliced') if mode in start}))
            return
    load_from = Path(start['checkpoint']) if start else None
    trainings = seed_rows(args.models, args.seeds)
    if args.jobs > 1:  # spawn: CUDA cannot be used in a forked child
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context('spawn')) as pool:
            futures = {name: pool.submit(train_and_evaluate_logged, name, configs[model][0],
                                         configs[model][1] + seed, data, args.work, args, load_from)
                       for name, model, seed in trainings}
            results = {name: future.result() for name, future in futures.items()}
    else:
        results = {name: train_and_evaluate(name, configs[model][0], configs[model][1] + seed, data, args.work,
                                            args, load_from)
                   for name, model, seed in trainings}
    suffixes = [f' s{seed}' for seed in args.seeds] if args.seeds else ['']
    add_equal_epochs_row(results, data, args, suffixes)
    tood, afm = results.get('TOOD'), results.get('AFMNet')
    modes = ('full', 'sliced') if args.real else ('full',)
    rows = dict(results)
    if start:  # the starting point, and the AFMNet row's variants
        rows = {'TOOD stage 1': start, **results}
        for name, r in results.items():
            rows.update({f'{name}, {variant}': metrics | dict(train_s=r['train_s'])
                         for variant, metrics in r.get('variants', {}).items()})

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ['model', 'inference', 'epochs', 'train s', *(f'{view} {key}' for view, key in COLUMNS)]:
        table.add_column(col, justify='right')
    peer = results.get(EQUAL_EPOCHS, tood)  # the same epochs as AFMNet
    for mode in modes:
        for name, r in rows.items():
            table.add_row(name, mode, str(r.get('epochs') or '-'), fmt(r['train_s'], '.0f'),
                          *(fmt(r[mode][v][k], '.2f') for v, k in COLUMNS))
        if tood and afm:  # time per epoch where the epochs differ (a --max-time run)
            per_epoch = [r['train_s'] / (r.get('epochs') or 1) for r in (afm, tood)]
            table.add_row('AFMNet vs TOOD', mode, '', f"{per_epoch[0] / per_epoch[1]:.2f}x",
                          *(fmt(difference(afm[mode][v][k], peer[mode][v][k]), '+.2f') for v, k in COLUMNS))
    console = Console(width=160)
    console.print(table)
    summary = seed_summary(results, trainings + [(f'{EQUAL_EPOCHS}{suffix}', EQUAL_EPOCHS, []) for suffix in suffixes],
                           modes) if args.seeds else {}
    if summary:
        print_seed_summary(summary, modes, console)
    write_json(args.work / 'results.json', dict(settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, data=about,
                                                results=results, stage1=start,
                                                seed_summary=summary_as_json(summary, modes)))
    print(json.dumps({f'{name}/{mode}': {f'{v}/{k}': None if r[mode][v][k] is None else round(r[mode][v][k], 2)
                                         for v, k in COLUMNS}
                      for mode in modes for name, r in rows.items()}))


if __name__ == '__main__':
    main()
