"""`afm evaluate`: the official VisDrone numbers and the COCO view (any category table)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm evaluate --gt my_data/val.json --pred results/my_val/predictions.json --classwise --size-ranges aitod

  afm evaluate --task mot --gt VisDrone2019-MOT-val/annotations --images VisDrone2019-MOT-val/sequences --pred tracks/mot --json mot.json
"""

# The library's names of parameters that this command spells otherwise.
FLAGS = {"images_dir": "--images"}


def evaluate(
    ctx: typer.Context,
    gt: Path = typer.Option(..., "--gt", help="Ground truth: a COCO json of any category table "
                          "(VisDrone's: `afm convert-visdrone`'s), a VisDrone annotations folder (with --images), or a "
                          "dataset as `afm train --data` takes it (a data.yaml, ...; with --split)."),
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
    classwise: bool = typer.Option(False, "--classwise", help="Also print per-class results, by class name."),
    size_ranges: str = typer.Option("coco", "--size-ranges", help="The COCO view's object sizes: coco (tiny "
                                    "< 16, small < 32, medium < 96 px, large) or aitod (AI-TOD's very tiny 2-8, "
                                    "tiny 8-16, small 16-32, medium 32+ px; by sqrt(area))."),
    split: str = typer.Option("val", "--split", help="Which split of a dataset --gt (a data.yaml, ...) is scored."),
    analyse_dir: Optional[Path] = typer.Option(
        None, "--analyse", help="Folder for the error analysis (COCO view): figures and analysis.json."),
    draw_errors: Optional[Path] = typer.Option(
        None, "--draw-errors", help="Folder for every image with its TP, FP and FN drawn."),
    report_dir: Optional[Path] = typer.Option(
        None, "--report", help="Folder for a static report page, DIR/index.html (both views)."),
    error_score: float = typer.Option(
        0.3, "--error-score", help="Lowest score counted by the confusion matrix, the TP/FP/FN drawings "
        "and the missed-objects table."),
    task: str = typer.Option("det", "--task", help="det (detections) or mot (tracks: VisDrone-MOT "
                          "folders, --gt annotations, --images sequences, --pred <seq>.txt results)."),
) -> None:
    """Evaluate detections: the VisDrone toolkit's numbers and the COCO view; or, with --task mot,
    tracks: the VisDrone-MOT toolkit's numbers (CLEAR MOT, IDF1) and HOTA.

    Each equals its official MATLAB toolkit (VisDrone2018-DET 1.0.4, VisDrone2018-MOT) on the same files.
    """
    from rich.console import Console

    from afmcli.commands.tables import rich_table
    from afmcli.errors import AfmError
    from afmcli.evaluation.loaders import image_files, image_rows, load_ground_truth, load_predictions
    from afmcli.evaluation.coco_view import check_size_ranges
    from afmcli.evaluation.metrics import check_view, check_view_applies, compute_metrics
    from afmcli.evaluation.tables import metric_tables
    from afmcli.io import check_output_file, check_replaceable, output_locks, write_json
    from afmcli.progress import console as err_console

    # One run at a time writes each output; released when the command ends.
    ctx.with_resource(output_locks("afm evaluate", json_out=json_out, plots=plots, analyse_dir=analyse_dir,
                                   draw_errors=draw_errors, report_dir=report_dir))
    if task == "mot":
        detection_only = [flag for flag, given in (
            ("--view", view != "both"), ("--plots", plots is not None), ("--classwise", classwise),
            ("--analyse", analyse_dir is not None), ("--draw-errors", draw_errors is not None),
            ("--report", report_dir is not None), ("--size-ranges", size_ranges != "coco"),
            ("--split", split != "val")) if given]
        if detection_only:
            raise AfmError(f"--task mot takes --gt, --images, --pred and --json only, not {detection_only[0]}")
        _evaluate_mot(gt, pred, images, json_out)
        return
    if task != "det":
        raise AfmError(f"--task must be det or mot, got {task!r}")
    check_view(view)
    check_size_ranges(size_ranges)
    if not 0 <= error_score <= 1:
        raise AfmError(f"--error-score must be between 0 and 1, got {error_score}")
    if json_out is not None:
        check_output_file(json_out, "--json")
    for folder, option in ((plots, "--plots"), (analyse_dir, "--analyse"), (draw_errors, "--draw-errors"),
                           (report_dir, "--report")):
        if folder is not None:
            check_replaceable(folder, option)
    truth = load_ground_truth(gt, images, split)
    check_view_applies(view, truth.table)
    rows = image_rows(truth, load_predictions(pred, truth))
    drawn = draw_errors is not None or report_dir is not None
    files = image_files(truth, gt, images) if drawn else {}  # checked before any work
    metrics = compute_metrics(rows, "both" if report_dir is not None else view,  # the report shows both
                              pr_curves=plots is not None, table=truth.table, size_ranges=size_ranges)

    console = Console()
    for table in metric_tables(metrics, classwise):
        console.print(rich_table(table))
    if json_out is not None:
        write_json(json_out, metrics.to_json(), indent=2)
    if plots is not None:
        from afmcli.viz.pr_curves import plot_coco_pr_curves, plot_pr_curves

        written = plot_pr_curves(metrics.visdrone, plots) if metrics.visdrone is not None else \
            plot_coco_pr_curves(metrics.coco_pr, metrics.stats["coco"], plots)
        err_console.print(f"PR curves: {len(written)} PNG files in {plots}", markup=False, highlight=False)
    if analyse_dir is not None or drawn:
        _error_analysis(rows, files, error_score, analyse_dir, draw_errors, report_dir, metrics,
                        [f"ground truth: {gt}", f"detections: {pred}"], size_ranges)


def _evaluate_mot(gt: Path, pred: Path, images: Optional[Path], json_out: Optional[Path]) -> None:
    """--task mot: VisDrone2019-MOT's toolkit numbers and HOTA (docs/visdrone-mot-eval.md)."""
    from rich.console import Console

    from afmcli.commands.tables import rich_table
    from afmcli.errors import AfmError
    from afmcli.evaluation.mot_loaders import evaluate_mot
    from afmcli.evaluation.tables import mot_tables
    from afmcli.io import check_output_file, write_json

    if images is None:
        raise AfmError("--task mot needs --images SEQUENCES (the sequence folders give the frame sizes)")
    if json_out is not None:
        check_output_file(json_out, "--json")
    result = evaluate_mot(gt, pred, images)
    console = Console()
    for table in mot_tables(result):
        console.print(rich_table(table))
    if json_out is not None:
        write_json(json_out, result.to_json(), indent=2)


def _error_analysis(rows: list, files: dict, score_thr: float, analyse_dir: Optional[Path],
                    draw_errors: Optional[Path], report_dir: Optional[Path], metrics, meta: list[str],
                    size_ranges: str) -> None:
    """--analyse, --draw-errors and --report: print the analysis tables, write the files."""
    from rich.console import Console

    from afmcli.commands.tables import rich_table
    from afmcli.evaluation.analysis import analyse
    from afmcli.evaluation.tables import analysis_tables, metric_tables
    from afmcli.progress import console as err_console
    from afmcli.viz.report import write_analysis_dir, write_error_drawings, write_report

    analysis = analyse(rows, score_thr, metrics.classes, size_ranges)
    tables = analysis_tables(analysis)
    console = Console()
    for table in tables.values():
        console.print(rich_table(table))
    if analyse_dir is not None:
        figures = write_analysis_dir(analysis, analyse_dir)
        err_console.print(f"error analysis: {len(figures)} figures and analysis.json in {analyse_dir}",
                          markup=False, highlight=False)
    if draw_errors is not None:
        written = write_error_drawings(analysis.images, files, draw_errors, metrics.classes)
        err_console.print(f"TP/FP/FN drawings: {len(written)} images in {draw_errors}", markup=False, highlight=False)
    if report_dir is not None:
        index = write_report(report_dir, "afm evaluation report", [*meta, f"{len(rows)} images"],
                             metric_tables(metrics, classwise=True), [tables["by_size"], tables["by_class"]],
                             tables["worst"], metrics.visdrone, analysis, files)
        err_console.print(f"report: {index}", markup=False, highlight=False)
