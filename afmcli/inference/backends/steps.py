"""The config's test pipeline as steps, fed with arrays (the mmdet backend and device tiles read it)."""

from __future__ import annotations

import copy
from typing import Mapping, Sequence


def step_type(step: Mapping) -> str:
    t = step.get("type")
    return (t if isinstance(t, str) else getattr(t, "__name__", str(t))).split(".")[-1]


def ndarray_pipeline(pipeline_cfg: Sequence[Mapping]) -> list[dict]:
    """The test pipeline fed with arrays: every ``Load*`` step (image, annotations,
    masks from files) is dropped and ``LoadImageFromNDArray`` goes first."""
    steps = [copy.deepcopy(dict(s)) for s in pipeline_cfg if not step_type(s).startswith("Load")]
    return [dict(type="mmdet.LoadImageFromNDArray"), *steps]
