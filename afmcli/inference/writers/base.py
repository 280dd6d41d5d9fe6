"""The :class:`Writer` protocol of `afm infer`'s outputs, and their registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

if TYPE_CHECKING:  # annotations only: run.py imports the writers
    from afmcli.inference.predict import ImageResult
    from afmcli.inference.run import InferSettings
    from afmcli.inference.sources import ImageItem, Source

# Gives the temporary path of an entry of OUT; every entry is renamed into place once
# all writers have closed without error (afmcli.io.SharedFolder.writing).
Stage = Callable[[str], Path]

WRITERS: list[type["Writer"]] = []


@dataclass(frozen=True)
class RunInfo:
    """What the writers of a run know about it."""

    settings: InferSettings
    source: Source
    classes: tuple[str, ...]  # the model's class names
    category_ids: tuple[int, ...]  # the category id of each model class
    state_dir: Path  # OUT/.afm-infer: writers keep what they make while the run goes there
    retrying: bool = False  # some images could not be read: the run state stays for a rerun

    @property
    def names(self) -> Mapping[int, str]:
        """Category id -> class name."""
        return dict(zip(self.category_ids, self.classes))


class Writer:
    """One output format: ``names`` are the entries of OUT it writes (files or folders).

    Built at assembly with ``stage`` and the run; then ``add(item, result)`` for each image
    in source order (results from the records: labels are category ids, boxes in image
    pixels), and ``close()`` to finish its files. ``option`` names the setting that turns
    it on (None: always written). A writer that needs the pixels sets ``needs_pixels`` and
    gets :meth:`on_image` in the process that ran the image, while the run goes.
    """

    names: tuple[str, ...] = ()
    option: str | None = None
    needs_pixels = False

    def __init__(self, stage: Stage, run: RunInfo):
        self.run = run

    @classmethod
    def applies(cls, names: Mapping[int, str]) -> bool:
        """Whether this format can express the run's categories (id -> name); an always-on
        writer that cannot is left out of the run."""
        return True

    @classmethod
    def check(cls, source: Source, names: Mapping[int, str]) -> None:
        """Refuse, before any work, a source or a category table this format cannot describe."""

    @classmethod
    def on_image(cls, run: RunInfo, item: ImageItem, image: np.ndarray, result: ImageResult) -> None:
        """Called for each image as it is run (only with ``needs_pixels``)."""

    def add(self, item: ImageItem, result: ImageResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the files (the staging renames them into place)."""


def register(cls: type[Writer]) -> type[Writer]:
    WRITERS.append(cls)
    return cls
