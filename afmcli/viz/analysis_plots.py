"""Figures of the error analysis (COCO view), as PNG files.

error_decomposition.png: COCO's analyze() plot per size range; each band is the
precision a kind of error costs (C75 at the bottom, then what C50, Loc, Sim, Oth,
BG and FN add), its AP in the legend. error_decomposition_classes.png: the same
per class, all sizes. confusion_matrix.png: counts, shaded by the share of the row.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from afmcli.evaluation.analysis import BACKGROUND, STEPS, Analysis, ErrorDecomposition  # noqa: E402
from afmcli.io import atomic_path  # noqa: E402

STEP_COLORS = ("#2b5797", "#8fb8e8", "#c0504d", "#5ce561", "#8064a2", "#ff9900", "#e6e6e6")


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def _decomposition_panel(ax, d: ErrorDecomposition, title: str, area: str = "all", cls: str | None = None) -> None:
    ax.set(xlim=(0, 1), ylim=(0, 1), title=title, xlabel="recall")
    curves = [d.curve(step, area, cls) for step in STEPS]
    if curves[0] is None:
        ax.text(0.5, 0.5, "no objects", ha="center", va="center", color="0.4")
        return
    below = np.zeros_like(curves[0])
    for step, curve, color in zip(STEPS, curves, STEP_COLORS):
        # Stacked: greedy matching can put a later step a little under an earlier one at some recall.
        curve = np.maximum(curve, below)
        ax.fill_between(d.recall_thresholds, below, curve, color=color, lw=0,
                        label=f"{step} {d.ap(step, area, cls):.1f}")
        ax.plot(d.recall_thresholds, curve, color="black", lw=0.5)
        below = curve
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def plot_error_decomposition(d: ErrorDecomposition, path: Path) -> None:
    areas = list(d.areas)
    fig, axes = plt.subplots(1, len(areas), figsize=(3.2 * len(areas), 4.4), dpi=100, sharey=True,
                             layout="constrained")
    for ax, area in zip(axes, areas):
        _decomposition_panel(ax, d, f"{area} objects", area)
    axes[0].set_ylabel("precision")
    fig.suptitle("COCO view: error decomposition (AP %, mean over classes)")
    _save(fig, path)


def plot_error_decomposition_classes(d: ErrorDecomposition, path: Path) -> None:
    cols = min(5, len(d.classes))
    rows = -(-len(d.classes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.5 * rows), dpi=100, sharey=True,
                             layout="constrained", squeeze=False)
    for ax, name in zip(axes.ravel(), d.classes):
        _decomposition_panel(ax, d, name, cls=name)
    for ax in axes.ravel()[len(d.classes):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    fig.suptitle("COCO view: error decomposition per class (AP %, all sizes)")
    _save(fig, path)


def plot_confusion_matrix(a: Analysis, path: Path) -> None:
    counts = a.confusion
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    labels = [*a.decomposition.classes, BACKGROUND]
    fig, ax = plt.subplots(figsize=(8.4, 7.4), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="detected as", ylabel="ground truth",
           title=f"COCO view: confusion matrix (IoU 0.5, score >= {a.score_thr:g})")
    _save(fig, path)


def write_analysis_figures(a: Analysis, out_dir: Path) -> list[str]:
    """The three figures and the COCO PR curves into ``out_dir``; returns the file names."""
    from afmcli.viz.pr_curves import plot_coco_pr

    figures = {"error_decomposition.png": lambda p: plot_error_decomposition(a.decomposition, p),
               "error_decomposition_classes.png": lambda p: plot_error_decomposition_classes(a.decomposition, p),
               "confusion_matrix.png": lambda p: plot_confusion_matrix(a, p),
               "coco_pr.png": lambda p: plot_coco_pr(a.decomposition, p)}
    for name, plot in figures.items():
        plot(Path(out_dir) / name)
    return list(figures)
