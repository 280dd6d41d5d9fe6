"""`afm evaluate`: the official VisDrone numbers and the COCO view."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm evaluate --gt Datasets/labels/annotations/val_labels.json --pred results/val/visdrone

  afm evaluate --gt VisDrone2019-DET-val/annotations --images VisDrone2019-DET-val/images --pred results/val/predictions.json --view visdrone --json metrics.json
"""

# The library's names of parameters that this command spells otherwise.
FLAGS = {"images_dir": "--images"}


def evaluate(
    ctx: typer.Context,
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

    from afmcli.commands.tables import rich_table
    from afmcli.errors import AfmError
    from afmcli.evaluation.loaders import image_files, image_rows, load_ground_truth, load_predictions
    from afmcli.evaluation.metrics import check_view, compute_metrics
    from afmcli.evaluation.tables import metric_tables
    from afmcli.io import check_output_file, check_replaceable, output_locks, write_json
    from afmcli.progress import console as err_console

    # One run at a time writes each output; released when the command ends.
    ctx.with_resource(output_locks("afm evaluate", json_out=json_out, plots=plots, analyse_dir=analyse_dir,
                                   draw_errors=draw_errors, report_dir=report_dir))
    check_view(view)
    if not 0 <= error_score <= 1:
        raise AfmError(f"--error-score must be between 0 and 1, got {error_score}")
    if json_out is not None:
        check_output_file(json_out, "--json")
    for folder, option in ((plots, "--plots"), (analyse_dir, "--analyse"), (draw_errors, "--draw-errors"),
                           (report_dir, "--report")):
        if folder is not None:
            check_replaceable(folder, option)
    truth = load_ground_truth(gt, images)
    rows = image_rows(truth, load_predictions(pred, truth))
    drawn = draw_errors is not None or report_dir is not None
    files = image_files(truth, gt, images) if drawn else {}  # checked before any work
    metrics = compute_metrics(rows, "both" if report_dir is not None else view,  # the report shows both
                              pr_curves=plots is not None)

    console = Console()
    for table in metric_tables(metrics, classwise):
        console.print(rich_table(table))
    if json_out is not None:
        write_json(json_out, metrics.to_json(), indent=2)
    if plots is not None:
        from afmcli.viz.pr_curves import plot_pr_curves

        written = plot_pr_curves(metrics.visdrone, plots)
        err_console.print(f"PR curves: {len(written)} PNG files in {plots}", markup=False, highlight=False)
    if analyse_dir is not None or drawn:
        _error_analysis(rows, files, error_score, analyse_dir, draw_errors, report_dir, metrics,
                        [f"ground truth: {gt}", f"detections: {pred}"])


def _error_analysis(rows: list, files: dict, score_thr: float, analyse_dir: Optional[Path],
                    draw_errors: Optional[Path], report_dir: Optional[Path], metrics, meta: list[str]) -> None:
    """--analyse, --draw-errors and --report: print the analysis tables, write the files."""
    from rich.console import Console

    from afmcli.commands.tables import rich_table
    from afmcli.evaluation.analysis import analyse
    from afmcli.evaluation.tables import analysis_tables, metric_tables
    from afmcli.progress import console as err_console
    from afmcli.viz.report import write_analysis_dir, write_error_drawings, write_report

    analysis = analyse(rows, score_thr)
    tables = analysis_tables(analysis)
    console = Console()
    for table in tables.values():
        console.print(rich_table(table))
    if analyse_dir is not None:
        figures = write_analysis_dir(analysis, analyse_dir)
        err_console.print(f"error analysis: {len(figures)} figures and analysis.json in {analyse_dir}",
                          markup=False, highlight=False)
    if draw_errors is not None:
        written = write_error_drawings(analysis.images, files, draw_errors)
        err_console.print(f"TP/FP/FN drawings: {len(written)} images in {draw_errors}", markup=False, highlight=False)
    if report_dir is not None:
        index = write_report(report_dir, "afm evaluation report", [*meta, f"{len(rows)} images"],
                             metric_tables(metrics, classwise=True), [tables["by_size"], tables["by_class"]],
                             tables["worst"], metrics.visdrone, analysis, files)
        err_console.print(f"report: {index}", markup=False, highlight=False)
