"""The vectorised fast path of parse_visdrone_text (evaluation reads ~300k lines)
gives exactly what the line loop gives, and leaves every error to the loop."""

from __future__ import annotations

import numpy as np
import pytest

from afmcli.data import visdrone_format
from afmcli.data.visdrone_format import parse_visdrone_text
from afmcli.errors import AfmError


def slow_parse(text, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(visdrone_format, "_parse_valid_text", lambda text, *layout: None)
        return parse_visdrone_text(text, "f.txt")


def test_real_file_quirks():
    text = "1,2,3,4,0.5,4,-1,-1,\r\n\r\n 5, 6 ,7,8,1,1,0,0\n\n"
    assert parse_visdrone_text(text).tolist() == [[1, 2, 3, 4, 0.5, 4, -1, -1], [5, 6, 7, 8, 1, 1, 0, 0]]
    assert parse_visdrone_text("").shape == (0, 8) and parse_visdrone_text("\r\n\n").shape == (0, 8)


@pytest.mark.parametrize("text, message", [
    ("1,2,3,4,1,4,0,0\n1,2,3\n", "f.txt:2: expected 8 comma-separated fields"),
    ("\n1,2,3,4,1,4,0,0,0\n", "f.txt:2: expected 8"),
    ("1,2,3,4,x,4,0,0\n", "f.txt:1: not a number"),
    ("1,2,3,4,1,4,0,0\nnan,2,3,4,1,4,0,0\n", "f.txt:2: not a finite number"),
    ("1,2,-3,4,1,4,0,0\n", "f.txt:1: negative box size"),
    ("1,2,3,4,1,4,0,0,,\n", "f.txt:1: expected 8"),
])
def test_errors_come_from_the_line_loop(text, message):
    with pytest.raises(AfmError, match=message):
        parse_visdrone_text(text, "f.txt")


def test_same_as_line_loop_on_random_valid_files(monkeypatch):
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(0, 30))
        values = np.c_[rng.uniform(-5, 2000, (n, 4)).round(int(rng.integers(0, 5))) * [1, 1, 0, 0]
                       + np.abs(rng.normal(0, 50, (n, 4))) * [0, 0, 1, 1],
                       rng.random((n, 1)).round(4), rng.integers(0, 12, (n, 1)), -np.ones((n, 2))]
        ends = ["\n", "\r\n", ",\n", ",\r\n", "\n\n"]
        text = "".join(",".join(repr(float(v)) if rng.random() < 0.5 else f" {v:g} " for v in row)
                       + ends[rng.integers(len(ends))] for row in values)
        assert visdrone_format._parse_valid_text(text) is not None  # the fast path took it
        fast = parse_visdrone_text(text, "f.txt")
        assert np.array_equal(fast, slow_parse(text, monkeypatch)) and fast.shape == (n, 8)
