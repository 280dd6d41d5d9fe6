"""`afm env`: versions and what mmcv's ops were compiled for."""

from __future__ import annotations


def env() -> None:
    """Print python, torch, mmcv, mmengine, mmdet versions, CUDA and mmcv ops."""
    raise NotImplementedError("env is not implemented yet")
