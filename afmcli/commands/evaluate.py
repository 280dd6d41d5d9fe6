"""`afm evaluate`: the official VisDrone numbers and the COCO view."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm evaluate --gt Datasets/labels/annotations/val_labels.json --pred results/val/visdrone

  afm evaluate --gt VisDrone2019-DET-val/annotations --images VisDrone2019-DET-val/images --pred results/val/predictions.json --view visdrone --json metrics.json
"""

VIEWS = ("visdrone", "coco", "both")
CLASS_COLUMNS = ("AP", "AP50", "AP75", "AR100", "AR500", "images", "gt")


def _json_number(v: float) -> float | None:
    return None if v is None or math.isnan(v) else v


def evaluate(
    gt: Path = typer.Option(..., "--gt", help="Ground truth: a VisDrone annotations folder "
                          "(with --images) or the COCO json of `afm convert-visdrone`."),
    pred: Path = typer.Option(..., "--pred", help="Detections: a VisDrone results folder "
                            "(<image>.txt each, e.g. results/val/visdrone) or a COCO results json."),
    images: Optional[Path] = typer.Option(None, "--images", help="Images folder, for the image "
                                           "sizes of a txt --gt."),
    view: str = typer.Option("both", "--view", help="Which numbers: visdrone (the official "
                          "toolkit's), coco, or both."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers "
                                              "(percent, unrounded) to this json file."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also write PR curves at IoU 0.5 "
                                           "(PNG) into this folder (replaced only when afm wrote it)."),
    classwise: bool = typer.Option(False, "--classwise", help="Also print per-class results."),
    analyse_dir: Optional[Path] = typer.Option(
        None, "--analyse", help="Folder for the error analysis (COCO view): figures and analysis.json."),
    draw_errors: Optional[Path] = typer.Option(
        None, "--draw-errors", help="Folder for every image with its TP, FP and FN drawn."),
    report_dir: Optional[Path] = typer.Option(
        None, "--report", help="Folder for a static report page, DIR/index.html (both views)."),
    error_score: float = typer.Option(
        0.3, "--error-score", help="Lowest score counted by the confusion matrix, the TP/FP/FN drawings "
        "and the missed-objects table."),
) -> None:
    """Evaluate detections: the VisDrone toolkit's numbers and the COCO view.

    The VisDrone view equals the official MATLAB toolkit 1.0.4 on the same files.
    """
    from rich.console import Console

    from afmcli.errors import AfmError, warn
    from afmcli.evaluation.loaders import image_rows, load_ground_truth, load_predictions
    from afmcli.evaluation.visdrone import evaluate_visdrone
    from afmcli.io import check_output_file, check_replaceable, write_json
    from afmcli.progress import console as err_console

    if view not in VIEWS:
        raise AfmError(f"--view must be one of {', '.join(VIEWS)}, got {view!r}")
    if not 0 <= error_score <= 1:
        raise AfmError(f"--error-score must be between 0 and 1, got {error_score}")
    if json_out is not None:
        check_output_file(json_out, "--json")
    for folder, option in ((plots, "--plots"), (analyse_dir, "--analyse"), (draw_errors, "--draw-errors"),
                           (report_dir, "--report")):
        if folder is not None:
            check_replaceable(folder, option)
    truth = load_ground_truth(gt, images)
    dets, warnings = load_predictions(pred, truth)
    rows = image_rows(truth, dets)
    for message in warnings:
        warn(message)
    if report_dir is not None:
        view = "both"  # the report shows both views
    files = _image_files(truth, gt, images, draw_errors, report_dir)
    report: dict = {}
    per_class: dict = {}
    visdrone = None
    if view in ("visdrone", "both") or plots is not None:
        visdrone = evaluate_visdrone(rows)
    if view in ("visdrone", "both"):
        report["visdrone"] = visdrone.stats
        per_class["visdrone"] = visdrone.classwise()
    if view in ("coco", "both"):
        from afmcli.evaluation.coco_view import evaluate_coco

        report["coco"], per_class["coco"] = evaluate_coco(rows)

    console = Console()
    for table in _tables(report, per_class if classwise else {}, len(rows)):
        console.print(table)
    if json_out is not None:
        out = {name: {k: _json_number(v) for k, v in stats.items()} for name, stats in report.items()}
        out["classwise"] = {name: {cls: None if row is None else {k: _json_number(v) for k, v in row.items()}
                                   for cls, row in table.items()} for name, table in per_class.items()}
        write_json(json_out, out, indent=2)
    if plots is not None:
        from afmcli.viz.pr_curves import plot_pr_curves

        written = plot_pr_curves(visdrone, plots)
        err_console.print(f"PR curves: {len(written)} PNG files in {plots}", markup=False, highlight=False)
    if analyse_dir is not None or draw_errors is not None or report_dir is not None:
        _error_analysis(rows, files, error_score, analyse_dir, draw_errors, report_dir,
                        _tables(report, per_class, len(rows)), visdrone, [f"ground truth: {gt}", f"detections: {pred}"])


def _fmt(v: float | None, visdrone: bool) -> str:
    from afmcli.evaluation.visdrone import round_percent

    if v is None or math.isnan(v):
        return "-"
    # The toolkit prints roundn(v, -2): round half away from zero on 100 * v.
    return f"{round_percent(v):.2f}" if visdrone else f"{v:.2f}"


def _tables(report: dict, per_class: dict, num_images: int) -> list:
    """One summary table (a column per view), then per-class tables."""
    from rich.table import Table

    heads = {"visdrone": "VisDrone toolkit (official)", "coco": "COCO view"}
    summary = Table(title=f"Detection results, {num_images} images (%)")
    summary.add_column("metric")
    keys: list[str] = []
    for name, stats in report.items():
        summary.add_column(heads[name], justify="right")
        keys += [k for k in stats if k not in keys]
    for key in sorted(keys, key=lambda k: (k.startswith("AR"), keys.index(k))):
        summary.add_row(key, *(_fmt(stats.get(key), name == "visdrone") for name, stats in report.items()))
    tables = [summary]
    for name, rows in per_class.items():
        # The json has every per-class number; the table keeps what fits 80 columns.
        columns = [k for k in next((r for r in rows.values() if r is not None), {}) if k in CLASS_COLUMNS]
        table = Table(title=f"{heads[name]}, per class (%)")
        table.add_column("class", no_wrap=True)
        for key in columns:
            table.add_column(key, justify="right")
        for cls, row in rows.items():
            cells = ["-"] * len(columns) if row is None else [
                str(row[k]) if k in ("images", "gt") else _fmt(row[k], name == "visdrone") for k in columns]
            table.add_row(cls, *cells)
        tables.append(table)
    return tables


def _image_files(truth, gt: Path, images: Optional[Path], draw_errors: Optional[Path],
                 report_dir: Optional[Path]) -> dict:
    """The image file of each image, checked before any work, when something is to be drawn."""
    from afmcli.evaluation.loaders import image_files

    if draw_errors is None and report_dir is None:
        return {}
    return image_files(truth, gt, images)


def _error_analysis(rows: list, files: dict, score_thr: float, analyse_dir: Optional[Path],
                    draw_errors: Optional[Path], report_dir: Optional[Path], metric_tables: list,
                    visdrone, meta: list[str]) -> None:
    """--analyse, --draw-errors and --report: print the analysis tables, write the files."""
    from rich.console import Console

    from afmcli.evaluation.analysis import analyse
    from afmcli.progress import console as err_console
    from afmcli.viz.report import write_analysis_dir, write_error_drawings, write_report

    analysis = analyse(rows, score_thr)
    tables = _analysis_tables(analysis)
    console = Console()
    for table in tables.values():
        console.print(table)
    if analyse_dir is not None:
        figures = write_analysis_dir(analysis, analyse_dir)
        err_console.print(f"error analysis: {len(figures)} figures and analysis.json in {analyse_dir}",
                          markup=False, highlight=False)
    if draw_errors is not None:
        written = write_error_drawings(analysis.images, files, draw_errors)
        err_console.print(f"TP/FP/FN drawings: {len(written)} images in {draw_errors}", markup=False, highlight=False)
    if report_dir is not None:
        index = write_report(report_dir, "afm evaluation report", [*meta, f"{len(rows)} images"], metric_tables,
                             [tables["by_size"], tables["by_class"]], tables["worst"], visdrone, analysis, files)
        err_console.print(f"report: {index}", markup=False, highlight=False)


def _analysis_tables(analysis) -> dict:
    """Error decomposition per size and per class, the confusion matrix, the worst images."""
    from rich import box
    from rich.table import Table

    from afmcli.data.visdrone_format import CLASSES
    from afmcli.evaluation.analysis import BACKGROUND, STEPS
    from afmcli.viz.report import TABLE_IMAGES

    d = analysis.decomposition
    by_size = Table(title="COCO view: error decomposition by size (AP %)")
    by_class = Table(title="COCO view: error decomposition by class (AP %)")
    for table, first in ((by_size, "objects"), (by_class, "class")):
        table.add_column(first, no_wrap=True)
        for step in STEPS:
            table.add_column(step, justify="right")
    for area, row in d.table().items():
        by_size.add_row(area, *(_fmt(row[s], False) for s in STEPS))
    for name in CLASSES:
        by_class.add_row(name, *(_fmt(d.ap(s, "all", name), False) for s in STEPS))
    labels = [*CLASSES, BACKGROUND]
    # No column lines: eleven count columns then fit 80 characters.
    confusion = Table(title=f"COCO view: confusion matrix, IoU 0.5, score >= {analysis.score_thr:g} "
                            "(rows: objects, columns: detected as)", box=box.SIMPLE_HEAD, padding=(0, 1),
                      collapse_padding=True)
    confusion.add_column("", no_wrap=True)
    for label in labels:
        confusion.add_column("bg" if label == BACKGROUND else label[:3], justify="right", min_width=3)
    for label, counts in zip(labels, analysis.confusion):
        confusion.add_row(label, *(str(n) for n in counts))
    worst = Table(title=f"Images with the most missed objects (score >= {analysis.score_thr:g}, IoU 0.5)")
    for column in ("image", "objects", "TP", "FP", "FN", "FN tiny"):
        worst.add_column(column, justify="left" if column == "image" else "right")
    for m in analysis.worst_images(TABLE_IMAGES):
        worst.add_row(*(str(v) for v in m.row().values()))
    return {"by_size": by_size, "by_class": by_class, "confusion": confusion, "worst": worst}
