"""What `afm evaluate` writes for people to look at: the error analysis folder,
TP/FP/FN drawings, and one static report page.

The report is DIR/index.html with every file it shows beside it (relative
links): plain HTML and CSS, no script, no server, no network.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from afmcli.errors import AfmError
from afmcli.evaluation.analysis import STEP_HELP, Analysis, ImageMatches, similar_groups
from afmcli.evaluation.tables import TextTable
from afmcli.io import atomic_path, write_json
from afmcli.progress import track
from afmcli.viz.draw import draw_errors, write_image

GALLERY_IMAGES = 12
GALLERY_MAX_SIDE = 1600


def write_analysis_dir(analysis: Analysis, out: Path) -> list[str]:
    """Figures and analysis.json into ``out`` (atomically); returns the figure names."""
    from afmcli.viz.analysis_plots import write_analysis_figures

    with atomic_path(out) as tmp:
        tmp.mkdir()
        figures = write_analysis_figures(analysis, tmp)
        write_json(tmp / "analysis.json", analysis.to_json(), indent=2)
    return figures


def error_drawing(match: ImageMatches, path: Path, classes: Sequence[str], max_side: int | None = None) -> np.ndarray:
    """The image with its matches drawn, boxes named by ``classes`` (the rows number them 1..K)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AfmError(f"{path}: cannot read the image")
    drawn = draw_errors(image, match.tp, match.fp, match.fn, match.ignored, dict(enumerate(classes, start=1)))
    scale = 1.0 if max_side is None else min(1.0, max_side / max(drawn.shape[:2]))
    return drawn if scale == 1.0 else cv2.resize(drawn, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def write_error_drawings(matches: Sequence[ImageMatches], files: Mapping[str, Path], out: Path,
                         classes: Sequence[str], max_side: int | None = None) -> list[Path]:
    """Each image with its TP, FP and FN drawn, as ``out/<name>.png`` (.jpg when large),
    atomically; returns the file names relative to ``out``."""
    written = []
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for match in track(matches, "drawing"):
            path = write_image(tmp / match.name, error_drawing(match, files[match.name], classes, max_side))
            written.append(Path(path.name))
    return written


def html_table(table: TextTable) -> str:
    """A table as HTML (its title as caption, numbers aligned right)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if r else ""}>{escape(v)}</td>'
                                    for v, r in zip(row, table.numeric)) + "</tr>" for row in table.rows)
    caption = f"<caption>{escape(table.title)}</caption>" if table.title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(src: str, caption: str, wide: bool = False) -> str:
    return (f'<figure class="{"wide" if wide else ""}"><a href="{escape(src)}"><img src="{escape(src)}" '
            f'alt="{escape(caption)}"></a><figcaption>{escape(caption)}</figcaption></figure>')


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1280px; color: #222; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
.meta { color: #555; } .tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
caption { font-weight: 600; text-align: left; padding-bottom: 4px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e3e3; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 8px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #ddd; } figure.wide img { width: 100%; }
figcaption { color: #555; font-size: 12px; }
.figs figure { max-width: 49%; } .gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; }
.gallery figure { margin: 0; } .gallery img { width: 100%; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; } dt { font-weight: 600; }
"""


def report_html(title: str, meta: Sequence[str], metric_tables: Sequence[TextTable],
                analysis_tables: Sequence[TextTable], worst_table: TextTable, pr_figures: Sequence[tuple[str, str]], analysis: Analysis,
                gallery: Sequence[tuple[ImageMatches, str]]) -> str:
    steps = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in STEP_HELP.items())
    similar = "; ".join(" / ".join(g) for g in similar_groups(analysis.decomposition.classes)) or "none"
    gallery_html = "".join(_figure(src, f"{m.name}: {m.objects} objects, TP {len(m.tp)}, FP {len(m.fp)}, "
                                        f"FN {len(m.fn)} ({m.missed_tiny} tiny)") for m, src in gallery)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
{"".join(f'<div class="meta">{escape(line)}</div>' for line in meta)}
<h2>Metrics</h2>
<p>The VisDrone view is the official toolkit's numbers (VisDrone's ten classes only); the COCO
view is COCO AP after the toolkit's ignored-region filtering, for any class list.</p>
<div class="tables">{"".join(html_table(t) for t in metric_tables)}</div>
<h2>Precision-recall at IoU 0.5</h2>
<div class="figs">{"".join(_figure(src, caption) for src, caption in pr_figures)}</div>
<h2>Error analysis (COCO view)</h2>
<p>COCO's error decomposition: each band is the precision one kind of error costs; the
legend gives the AP after that kind is forgiven. Similar classes: {escape(similar)}.</p>
<dl>{steps}</dl>
{_figure("analysis/error_decomposition.png", "error decomposition per size range", wide=True)}
<div class="tables">{"".join(html_table(t) for t in analysis_tables)}</div>
{_figure("analysis/error_decomposition_classes.png", "error decomposition per class", wide=True)}
{_figure("analysis/confusion_matrix.png", "confusion matrix: rows are objects, columns detections; "
         "background row: false positives, column: missed objects")}
<h2>Images with the most missed objects</h2>
<p>Detections scoring at least {analysis.score_thr:g}, matched to objects of their class at IoU 0.5:
true positives in green, false positives in vermilion, missed objects in yellow, ignored regions
and crowds shaded grey. Click an image for full size.</p>
{html_table(worst_table)}
<div class="gallery">{gallery_html}</div>
</body></html>
"""


def write_report(out: Path, title: str, meta: Sequence[str], metric_tables: Sequence[TextTable],
                 analysis_tables: Sequence[TextTable], worst_table: TextTable, visdrone, analysis: Analysis,
                 files: Mapping[str, Path]) -> Path:
    """The whole report folder, atomically; returns the path of its index.html. ``visdrone``:
    the toolkit's result, None for a class list it does not score (the COCO view's curves only)."""
    from afmcli.viz.pr_curves import plot_pr_curves

    with atomic_path(out) as tmp:
        tmp.mkdir()
        pr_figures = [("analysis/coco_pr.png", "COCO view")]
        if visdrone is not None:
            plot_pr_curves(visdrone, tmp / "pr")
            pr_figures.insert(0, ("pr/all_classes.png", "VisDrone view (official toolkit)"))
        write_analysis_dir(analysis, tmp / "analysis")
        worst = analysis.worst_images(GALLERY_IMAGES)
        drawn = write_error_drawings(worst, files, tmp / "worst", analysis.decomposition.classes, GALLERY_MAX_SIDE)
        html = report_html(title, meta, metric_tables, analysis_tables, worst_table, pr_figures, analysis,
                           [(m, f"worst/{name}") for m, name in zip(worst, drawn)])
        (tmp / "index.html").write_text(html, encoding="utf-8")
    return out / "index.html"
