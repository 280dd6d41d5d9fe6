"""Precision-recall curves at IoU 0.5, as PNG files; each title names its view.

VisDrone view: one figure with every evaluated class (all_classes.png) and one per
class (<class>.png). The filled step is the all-point interpolated precision whose
area is the toolkit's AP50; the thin line is the raw precision. COCO view: COCO's
101-point interpolated precision per class in one figure. Curves end at the last
recall reached (they do not run along the axis to recall 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from afmcli.data.visdrone_format import CLASSES  # noqa: E402
from afmcli.evaluation.analysis import ErrorDecomposition  # noqa: E402
from afmcli.evaluation.visdrone import VisDroneResult, voc_envelope  # noqa: E402
from afmcli.io import atomic_path  # noqa: E402
from afmcli.viz.draw import TAB10  # noqa: E402


def _draw(ax, recall: np.ndarray, precision: np.ndarray, label: str, color=None, fill: bool = False) -> None:
    mrec, mpre = voc_envelope(recall, precision)
    mrec, mpre = mrec[:-1], mpre[:-1]  # the envelope's padding to recall 1 is no recall reached
    line, = ax.step(mrec, mpre, where="pre", label=label, color=color)
    if fill:
        ax.fill_between(mrec, mpre, step="pre", alpha=0.15, color=line.get_color())
        ax.plot(recall, precision, lw=0.6, color=line.get_color(), alpha=0.6)


def _axes(title: str):
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_pr_curves(result: VisDroneResult, out_dir: str | Path) -> list[str]:
    """Write the PNGs into ``out_dir`` (atomically); returns the file names."""
    evaluated = [c for c in range(len(CLASSES)) if result.images_per_class[c]]
    names = []
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        fig, ax = _axes(f"VisDrone view: PR at IoU 0.5 (AP50 {result.stats['AP50']:.2f})")
        for c in evaluated:
            _draw(ax, *result.pr_curves[c], f"{CLASSES[c]} ({result.ap[c, 0]:.1f})", color=TAB10[c])
        ax.legend(fontsize=8, loc="upper right")
        fig.savefig(tmp / "all_classes.png", bbox_inches="tight")
        plt.close(fig)
        names.append("all_classes.png")
        for c in evaluated:
            fig, ax = _axes(f"VisDrone view: {CLASSES[c]}, AP50 {result.ap[c, 0]:.2f}, {result.gt_per_class[c]} gt")
            _draw(ax, *result.pr_curves[c], CLASSES[c], color=TAB10[c], fill=True)
            fig.savefig(tmp / f"{CLASSES[c]}.png", bbox_inches="tight")
            plt.close(fig)
            names.append(f"{CLASSES[c]}.png")
    return names


def plot_coco_pr(decomposition: ErrorDecomposition, path: str | Path) -> None:
    """COCO view, IoU 0.5, every class with objects, at ``path`` (PNG, atomically)."""
    recall = decomposition.recall_thresholds
    fig, ax = _axes(f"COCO view: PR at IoU 0.5 (AP50 {decomposition.ap('C50'):.2f})")
    for c, name in enumerate(decomposition.classes):
        precision = decomposition.curve("C50", cls=name)
        if precision is not None:
            _draw_coco(ax, recall, precision, f"{name} ({decomposition.ap('C50', cls=name):.1f})", TAB10[c % 10])
    ax.legend(fontsize=8, loc="upper right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def _draw_coco(ax, recall: np.ndarray, precision: np.ndarray, label: str, color, fill: bool = False) -> None:
    # COCO's precision is 0 at recall thresholds never reached: stop at the last reached.
    end = int(np.flatnonzero(precision > 0)[-1]) + 1 if (precision > 0).any() else 1
    ax.plot(recall[:end], precision[:end], color=color, label=label)
    if fill:
        ax.fill_between(recall[:end], precision[:end], alpha=0.15, color=color)


def plot_coco_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], stats: Mapping[str, float],
                        out_dir: str | Path) -> list[str]:
    """The COCO view's PR curves at IoU 0.5 (afmcli.evaluation.metrics.Metrics.coco_pr), one
    figure of every class and one per class, into ``out_dir`` (atomically): for a class list
    the VisDrone view does not score. Returns the file names."""
    names = []
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        fig, ax = _axes(f"COCO view: PR at IoU 0.5 (AP50 {stats['AP50']:.2f})")
        for c, (name, (recall, precision)) in enumerate(curves.items()):
            _draw_coco(ax, recall, precision, f"{name} ({100 * precision.mean():.1f})", TAB10[c % 10])
        ax.legend(fontsize=8, loc="upper right")
        fig.savefig(tmp / "all_classes.png", bbox_inches="tight")
        plt.close(fig)
        names.append("all_classes.png")
        for c, (name, (recall, precision)) in enumerate(curves.items()):
            fig, ax = _axes(f"COCO view: {name}, AP50 {100 * precision.mean():.2f}")
            _draw_coco(ax, recall, precision, name, TAB10[c % 10], fill=True)
            fig.savefig(tmp / f"{_file_name(name)}.png", bbox_inches="tight")
            plt.close(fig)
            names.append(f"{_file_name(name)}.png")
    return names


def _file_name(class_name: str) -> str:
    """A class name as a file name (a user's names may hold '/' or spaces)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in class_name) or "class"
