"""bench/bench_accuracy.py's real-data split: by sequence, about 80/20, never a sequence in both."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('bench_accuracy', ROOT / 'bench' / 'bench_accuracy.py')
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_sequence_split_every_fifth_sequence_to_val():
    names = [f'{seq:07d}_{i:05d}_d_0000001.jpg' for seq in range(10) for i in range(3)]
    train, val = bench.sequence_split(names)
    assert sorted({n[:7] for n in val}) == ['0000004', '0000009']
    assert len(train) == 24 and len(val) == 6 and not set(train) & set(val)


def test_evenly_spreads_over_the_list():
    assert bench.evenly(list('abcdefgh'), 4) == ['a', 'c', 'e', 'g']
    assert bench.evenly(list('abc'), None) == ['a', 'b', 'c'] == bench.evenly(list('abc'), 5)


@pytest.mark.skipif(not (bench.REAL / 'images').is_dir(), reason=f'real images not found at {bench.REAL}')
def test_real_split_is_80_20_by_sequence():
    names = sorted(p.name for p in (bench.REAL / 'images').glob('*.jpg'))
    train, val = bench.sequence_split(names)
    assert (len(train), len(val)) == (257, 67)
    assert not {n[:7] for n in train} & {n[:7] for n in val}


def test_real_parts_come_from_the_label_files(tmp_path):
    """The labels name the set: a copy that carries only the chosen images splits the same."""
    names = [f'{seq:07d}_{i:05d}_d_0000001' for seq in range(10) for i in range(3)]
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'images').mkdir()
    for name in names:
        (tmp_path / 'annotations' / f'{name}.txt').write_text('')
    parts = bench.real_parts(tmp_path, 4, None)
    # train sequences 0-3 and 5-8 (24 names); every 6th of them; val: sequences 4 and 9
    assert [n[:13] for n in parts['train']] == ['0000000_00000', '0000002_00000', '0000005_00000',
                                                '0000007_00000']
    assert sorted({n[:7] for n in parts['val']}) == ['0000004', '0000009'] and len(parts['val']) == 6
    assert all(n.endswith('.jpg') for n in parts['train'] + parts['val'])


def test_unknown_model_row_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setattr('sys.argv', ['bench_accuracy.py', '--models', 'TOOD', 'AFMNet+X'])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert '--models: unknown AFMNet+X (choose from TOOD, AFMNet, CFPN, CFPN+FPD, CFPN+HD' in err


@pytest.mark.parametrize('stage2_lr, expected', [(None, []), (2e-4, ['optim_wrapper.optimizer.lr=0.0002'])])
def test_stage2_trains_from_stage1_at_its_own_rate(monkeypatch, tmp_path, stage2_lr, expected):
    """--stage2-lr reaches the Runner only for rows that start from stage 1 (load_from)."""
    import argparse

    calls = []

    class Trained(Exception):
        pass

    def run_step(app, argv):
        calls.append(argv)
        raise Trained

    monkeypatch.setattr(bench, 'run_step', run_step)
    args = argparse.Namespace(epochs=2, options=[], full=False, real=False, stage2_lr=stage2_lr, max_time=None)
    for load_from in (None, tmp_path / 'epoch_8.pth'):
        with pytest.raises(Trained):
            bench.train_and_evaluate('AFMNet', 'configs/AFM/afmnet_tiny_synth.py', [], tmp_path, tmp_path,
                                     args, load_from)
    options = [[argv[i + 1] for i, a in enumerate(argv) if a == '--cfg-options'] for argv in calls]
    assert not [o for o in options[0] if o.startswith('optim_wrapper')]
    assert [o for o in options[1] if o.startswith('optim_wrapper')] == expected
    assert f'load_from={tmp_path / "epoch_8.pth"}' in options[1]


def test_max_time_reaches_afm_train_and_keeps_every_epoch(monkeypatch, tmp_path):
    import argparse

    calls = []
    monkeypatch.setattr(bench, 'run_step', lambda app, argv: calls.append(argv) or 0)
    monkeypatch.setattr(bench, 'last_checkpoint', lambda work_dir: work_dir / 'epoch_3.pth')
    monkeypatch.setattr(bench, 'infer_and_evaluate', lambda *a: {})
    args = argparse.Namespace(epochs=8, options=[], full=False, real=False, stage2_lr=None, max_time='150s',
                              staged=False)
    out = bench.train_and_evaluate('TOOD', 'configs/AFM/tood_tiny_synth.py', [], tmp_path, tmp_path, args)
    argv = calls[0]
    assert argv[argv.index('--max-time') + 1] == '150s'
    options = [argv[i + 1] for i, a in enumerate(argv) if a == '--cfg-options']
    assert {'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
            'train_cfg.max_epochs=8'} <= set(options)
    assert out['epochs'] == 3
    assert out['trained_config'] == str(tmp_path / 'TOOD' / 'work_dir' / 'tood_tiny_synth.py')


@pytest.mark.parametrize('tood_epochs, afm_epochs, scored_at', [(5, 3, 'epoch_3.pth'), (3, 3, None), (3, 4, None)])
def test_tood_is_compared_at_afmnets_epochs(monkeypatch, tmp_path, tood_epochs, afm_epochs, scored_at):
    """A --max-time run where TOOD got further: TOOD's checkpoint at AFMNet's last epoch is scored."""
    import argparse

    scored = []
    monkeypatch.setattr(bench, 'infer_and_evaluate', lambda config, ckpt, ann, work, args: scored.append(
        (config, ckpt, work)) or {'full': 'metrics'})
    ckpts = tmp_path / 'TOOD' / 'work_dir'
    ckpts.mkdir(parents=True)
    for epoch in range(1, tood_epochs + 1):
        (ckpts / f'epoch_{epoch}.pth').write_bytes(b'')
    results = dict(TOOD=dict(config='configs/AFM/tood_tiny_synth.py', epochs=tood_epochs,
                             checkpoint=str(ckpts / f'epoch_{tood_epochs}.pth'), train_s=10.0,
                             trained_config=str(ckpts / 'tood_tiny_synth.py')),
                   AFMNet=dict(epochs=afm_epochs, train_s=20.0))
    args = argparse.Namespace(work=tmp_path)
    bench.add_equal_epochs_row(results, tmp_path / 'data', args)
    if scored_at is None:
        assert scored == [] and list(results) == ['TOOD', 'AFMNet']
        return
    assert scored == [(ckpts / 'tood_tiny_synth.py', ckpts / scored_at, tmp_path / 'TOOD' / 'epoch_3')]
    assert results["TOOD at AFMNet's epochs"] == dict(full='metrics', config='configs/AFM/tood_tiny_synth.py',
                                                      checkpoint=str(ckpts / scored_at), epochs=3, train_s=None)
    (ckpts / scored_at).unlink()
    del results["TOOD at AFMNet's epochs"]
    with pytest.raises(SystemExit, match="epoch_3.pth not found: TOOD cannot be compared at 3 epochs"):
        bench.add_equal_epochs_row(results, tmp_path / 'data', args)


def test_seeds_make_one_row_per_model_and_seed_and_a_mean_with_its_spread():
    rows = bench.seed_rows(['TOOD', 'AFMNet'], [0, 1])
    assert rows == [('TOOD s0', 'TOOD', ['randomness.seed=0']), ('AFMNet s0', 'AFMNet', ['randomness.seed=0']),
                    ('TOOD s1', 'TOOD', ['randomness.seed=1']), ('AFMNet s1', 'AFMNet', ['randomness.seed=1'])]
    assert bench.seed_rows(['TOOD'], None) == [('TOOD', 'TOOD', [])]

    def run(ap, ap_tiny, train_s):
        metrics = {'coco': {'AP': ap, 'AP50': 10.0, 'AP_small': 1.0, 'AP_tiny': ap_tiny},
                   'visdrone': {'AP': 2.0, 'AP50': None}}
        return {'full': metrics, 'train_s': train_s}

    results = {'TOOD s0': run(5.27, 2.07, 100.0), 'TOOD s1': run(3.72, 1.93, 110.0),
               'AFMNet s0': run(4.68, 3.55, 150.0), 'AFMNet s1': run(4.78, 2.30, 140.0)}
    summary = bench.seed_summary(results, rows, ['full'])
    tood, afm = summary['TOOD']['full'], summary['AFMNet']['full']
    assert tood[('coco', 'AP')] == pytest.approx((4.495, 0.775))
    assert afm[('coco', 'AP_tiny')] == pytest.approx((2.925, 0.625))
    assert afm[('visdrone', 'AP50')] == (None, None)
    assert summary['TOOD']['runs'] == 2 and summary['AFMNet']['train_s'] / summary['TOOD']['train_s'] == \
        pytest.approx(145 / 105)


def test_seeds_compare_tood_at_afmnets_epochs_seed_by_seed(monkeypatch, tmp_path, capsys):
    """--seeds --max-time: each seed's TOOD is scored at the same seed's AFMNet epochs, and the
    mean over seeds compares AFMNet with those rows, not with TOOD's further epochs."""
    import argparse

    from rich.console import Console

    def metrics(ap):
        return {'full': {'coco': {'AP': ap, 'AP50': 1.0, 'AP_small': 1.0, 'AP_tiny': 1.0},
                         'visdrone': {'AP': 1.0, 'AP50': 1.0}}}

    at_epoch = {'TOOD s0': 4.0, 'TOOD s1': 6.0}  # TOOD's AP at AFMNet's epoch 3, per seed
    monkeypatch.setattr(bench, 'at_epochs', lambda name, result, epochs, data, args:
                        metrics(at_epoch[name]) | dict(epochs=epochs, train_s=None))
    results = {'TOOD s0': metrics(9.0) | dict(epochs=5, train_s=100.0),
               'AFMNet s0': metrics(5.0) | dict(epochs=3, train_s=150.0),
               'TOOD s1': metrics(9.0) | dict(epochs=5, train_s=100.0),
               'AFMNet s1': metrics(8.0) | dict(epochs=3, train_s=150.0)}
    bench.add_equal_epochs_row(results, tmp_path, argparse.Namespace(work=tmp_path), [' s0', ' s1'])
    assert {name for name in results if name.startswith(bench.EQUAL_EPOCHS)} == \
        {f'{bench.EQUAL_EPOCHS} s0', f'{bench.EQUAL_EPOCHS} s1'}
    rows = bench.seed_rows(['TOOD', 'AFMNet'], [0, 1]) + \
        [(f'{bench.EQUAL_EPOCHS}{s}', bench.EQUAL_EPOCHS, []) for s in (' s0', ' s1')]
    summary = bench.seed_summary(results, rows, ['full'])
    assert summary[bench.EQUAL_EPOCHS]['full'][('coco', 'AP')] == pytest.approx((5.0, 1.0))
    assert summary[bench.EQUAL_EPOCHS]['train_s'] is None and summary[bench.EQUAL_EPOCHS]['epochs'] == [3]
    assert summary['TOOD']['epochs'] == [5]
    bench.print_seed_summary(summary, ['full'], Console(width=200))
    out = capsys.readouterr().out
    # AFMNet's mean AP 6.5 against TOOD's 5.0 at the same epochs (not 9.0 at epoch 5).
    assert [line for line in out.splitlines() if 'AFMNet vs TOOD' in line][0].split('│')[6].strip() == '+1.50'


def test_variants_apply_to_rows_with_the_parts_they_switch():
    every = list(bench.VARIANTS)
    assert bench.row_variants('AFMNet s3', every) == every == bench.row_variants('CFPN+HD+FPD+AFFM', every)
    assert bench.row_variants('AFMNet+mask_w0.25 s0', ['HD head']) == ['HD head']
    assert bench.row_variants('CFPN+HD+FPD s1', every) == ['main head', 'HD head']
    assert bench.row_variants('CFPN+FPD s0', every) == [] == bench.row_variants('TOOD', every)


def _run(ap: float, variants: dict | None = None) -> dict:
    metrics = {view: {key: None if key == 'AP_tiny' else ap for _, key in bench.COLUMNS}
               for view in ('coco', 'visdrone')}
    return {'full': metrics, **({'variants': {v: {'full': _run(a)['full']} for v, a in variants.items()}}
                                if variants else {})}


def test_pooled_seeds_are_compared_with_tood_of_the_same_seed(tmp_path):
    """Hand-worked: TOOD 10, 12; X 11, 15 -> X 13 +- 2.83 (sample sd), X - TOOD 1, 3 -> +2 +- 1.41, 2/2;
    its 'main head' variant 9, 12 -> -1, 0 -> -0.5 +- 0.71, 0/2 (a tie is not above)."""
    import json
    import math

    a, b = tmp_path / 'a.json', tmp_path / 'b.json'
    a.write_text(json.dumps({'results': {'TOOD s0': _run(10), 'X s0': _run(11, {'main head': 9}),
                                         'TOOD stage 1': _run(1)}}))
    b.write_text(json.dumps({'results': {'TOOD s1': _run(12), 'X s1': _run(15, {'main head': 12}),
                                         'TOOD s0': _run(10)}}))
    runs = bench.pooled_runs([a, b])
    assert sorted(runs) == ['TOOD s0', 'TOOD s1', 'X s0', 'X s1', 'X, main head s0', 'X, main head s1']
    summary = bench.paired_summary(runs, ('full',))
    mean, sd, diff, diff_sd, wins = summary['X']['full'][('coco', 'AP')]
    assert (mean, diff, wins) == (13, 2, '2/2') and math.isclose(sd, 8 ** 0.5) and math.isclose(diff_sd, 2 ** 0.5)
    assert summary['X, main head']['full'][('coco', 'AP')][2:] == (-0.5, pytest.approx(0.5 ** 0.5), '0/2')
    assert summary['X']['full'][('coco', 'AP_tiny')] is None  # no value in any run
    bench.plot_paired(summary, ('full',), tmp_path / 'paired.png')
    import cv2

    drawn = cv2.imread(str(tmp_path / 'paired.png'))
    assert drawn is not None and drawn.shape[1] > 1000 and not list(tmp_path.glob('*.tmp*'))
    b.write_text(json.dumps({'results': {'TOOD s0': _run(10.5)}}))
    with pytest.raises(SystemExit, match=r'TOOD s0 differs between .*a\.json and .*b\.json'):
        bench.pooled_runs([a, b])


def test_rescore_adds_the_variants_of_each_eligible_row_to_the_file(monkeypatch, tmp_path):
    import argparse
    import json

    scored = []
    monkeypatch.setattr(bench, 'infer_and_evaluate', lambda config, ckpt, ann, work, args: scored.append(
        (Path(config).read_text(), ckpt, ann, work)) or {'full': len(scored)})
    rows = {}
    for name in ('TOOD s0', 'AFMNet s0', 'CFPN+HD+FPD s0'):
        (tmp_path / name / 'work_dir').mkdir(parents=True)
        rows[name] = dict(trained_config=str(tmp_path / name / 'work_dir' / 'cfg.py'),
                          checkpoint=str(tmp_path / name / 'work_dir' / 'epoch_4.pth'), full={})
    file = tmp_path / 'results.json'
    file.write_text(json.dumps(dict(settings=dict(real=False, work=str(tmp_path)),
                                    results={**rows, 'TOOD stage 1': {'full': {}}})))
    bench.rescore([file], argparse.Namespace(variants=['HD head', 'windows mask or main'], device='cpu'))
    after = json.loads(file.read_text())['results']
    assert 'variants' not in after['TOOD s0'] and 'variants' not in after['TOOD stage 1']
    assert after['AFMNet s0']['variants'] == {'HD head': {'full': 1}, 'windows mask or main': {'full': 2}}
    assert after['CFPN+HD+FPD s0']['variants'] == {'HD head': {'full': 3}}  # no AFFM: no window switch
    config, checkpoint, ann, work = scored[0]
    assert config == "_base_ = ['work_dir/cfg.py']\nmodel = dict(test_heads='hd')\n"
    assert checkpoint == tmp_path / 'AFMNet s0' / 'work_dir' / 'epoch_4.pth'
    assert ann == tmp_path / 'Datasets' / 'labels' / 'annotations' / 'val_labels.json'
    assert work == tmp_path / 'AFMNet s0' / 'variant1'


def test_a_row_finished_before_with_the_same_settings_is_reused(monkeypatch, tmp_path):
    """A cut-off run restarted with the same work dir retrains only what it had not finished."""
    import argparse

    trained = []

    def run_step(app, argv):
        trained.append(argv)
        (tmp_path / 'TOOD s0' / 'work_dir').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'TOOD s0' / 'work_dir' / 'epoch_4.pth').write_bytes(b'')
        return 1.0

    monkeypatch.setattr(bench, 'run_step', run_step)
    monkeypatch.setattr(bench, 'infer_and_evaluate', lambda *a: {'full': {'coco': {'AP': 1.0}}})
    monkeypatch.setattr(bench, 'last_checkpoint', lambda work_dir: work_dir / 'epoch_4.pth')
    args = argparse.Namespace(epochs=4, options=[], full=False, real=False, stage2_lr=None, max_time=None,
                              staged=False)
    first = bench.train_and_evaluate('TOOD s0', 'configs/AFM/tood_tiny_synth.py', ['randomness.seed=0'], tmp_path,
                                     tmp_path, args)
    again = bench.train_and_evaluate('TOOD s0', 'configs/AFM/tood_tiny_synth.py', ['randomness.seed=0'], tmp_path,
                                     tmp_path, args)
    assert len(trained) == 1 and again == first and again['checkpoint'].endswith('epoch_4.pth')
    args.epochs = 6  # asked otherwise: trained again
    bench.train_and_evaluate('TOOD s0', 'configs/AFM/tood_tiny_synth.py', ['randomness.seed=0'], tmp_path,
                             tmp_path, args)
    assert len(trained) == 2
