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
