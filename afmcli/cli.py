"""The `afm` command. Thin: each subcommand lives in afmcli/commands/<name>.py.

Any error prints as one line on stderr with exit code 2, each warning as one line; errors
about a parameter of library code name the command's flag. `--debug` anywhere on the
command line shows the traceback (and the libraries' warnings) instead.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from afmcli import __version__

from afmcli.commands import (convert, demo, env, evaluate, export, fuse, infer, masks,
                             synth, track, train)
from afmcli.commands.flags import flag_errors
from afmcli.errors import AfmError

app = typer.Typer(
    name="afm",
    help="AFMNet small-object detection for aerial images (mmdetection 3.3).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"afm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors "
                                     "(allowed anywhere on the command line)."),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print afm's version and exit.")) -> None:
    _state["debug"] = debug


# Each subcommand's help ends with its examples (EXAMPLES in its module).
app.command("convert", epilog=convert.CONVERT_EXAMPLES)(flag_errors(convert, "convert"))
app.command("convert-visdrone", epilog=convert.EXAMPLES)(flag_errors(convert, "convert_visdrone"))
app.command("make-masks", epilog=masks.EXAMPLES)(flag_errors(masks, "make_masks"))
app.command("synth", epilog=synth.EXAMPLES)(flag_errors(synth, "synth"))
app.command("train", context_settings={"allow_extra_args": False}, epilog=train.EXAMPLES)(
    flag_errors(train, "train"))
app.command("infer", epilog=infer.EXAMPLES)(flag_errors(infer, "infer"))
app.command("export", epilog=export.EXAMPLES)(flag_errors(export, "export"))
app.command("track", epilog=track.EXAMPLES)(flag_errors(track, "track"))
app.command("fuse", epilog=fuse.EXAMPLES)(flag_errors(fuse, "fuse"))
app.command("evaluate", epilog=evaluate.EXAMPLES)(flag_errors(evaluate, "evaluate"))
app.command("demo", epilog=demo.EXAMPLES)(flag_errors(demo, "demo"))
app.command("env", epilog=env.EXAMPLES)(flag_errors(env, "env"))


def _flags_show_no_type() -> None:
    """Boolean flags take no value: list them without typer's ``<bool>`` type column.

    The hook is typer's own (recent versions); where an installed typer has none (the GPU
    machines' image had an older one), help keeps typer's column and afm still starts."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is not None:
        TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else shown(self, ctx)


_flags_show_no_type()


# Options that take several values after one flag, as in mmdet's tools (nargs='+').
MULTI_VALUE_OPTIONS = ("--cfg-options", "--weights")


def _mmdet_style_options(argv: list[str]) -> list[str]:
    """Accept mmdet's tools/train.py spellings: a bare `--resume` means the latest
    checkpoint, and `--cfg-options a=1 b=2` gives several values after one flag."""
    out: list[str] = []
    multi = None
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            multi = arg if arg in MULTI_VALUE_OPTIONS else None
            out.append(arg)
            if arg == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
                out.append("auto")
        elif multi and out[-1] != multi:
            out += [multi, arg]
        else:
            out.append(arg)
    return out


# Libraries whose warnings are noise for a user of afm (shown with --debug).
NOISY_LIBRARIES = r"(numpy|ensemble_boxes|mmengine|mmdet|mmcv|torch|matplotlib)(\.|$)"


def _quiet_libraries() -> None:
    """OpenCV's own log lines ([ WARN:0@...]) and library warnings off: afm reports
    what matters itself, as one line."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    if "cv2" in sys.modules:  # already imported: the variable is read only at import
        cv2 = sys.modules["cv2"]
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # numpy's divide/invalid/empty-slice
    warnings.filterwarnings("ignore", module=NOISY_LIBRARIES)


def _usage_error(exc) -> str:
    """click/typer's usage error as afm's one line."""
    msg = exc.format_message().strip().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"{msg} (see `{ctx.command_path} --help`)" if ctx is not None else msg


def main(argv: list[str] | None = None) -> None:
    argv = _mmdet_style_options(sys.argv[1:] if argv is None else argv)
    # --debug is a global flag but may come anywhere, e.g. after the subcommand's options.
    end = argv.index("--") if "--" in argv else len(argv)
    _state["debug"] = "--debug" in argv[:end]
    argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    if _state["debug"]:
        argv = ["--debug", *argv]
    else:
        _quiet_libraries()
    try:
        # Non-standalone click returns exit codes (help, --version) instead of exiting.
        code = app(args=argv, prog_name="afm", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into Exit(130)
            print("afm: interrupted", file=sys.stderr)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SystemExit:
        raise
    except (KeyboardInterrupt, typer.Abort):
        print("afm: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # the one place that turns any error into one line
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click/typer usage errors
            if exc.format_message().strip():  # `afm` alone: the help was the answer, no error line
                print(f"afm: error: {_usage_error(exc)}", file=sys.stderr)
            sys.exit(2)
        if _state["debug"]:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, AfmError):
            print(f"afm: error: {msg}", file=sys.stderr)
        else:
            print(f"afm: error: {type(exc).__name__}: {msg} (run with --debug for the traceback)",
                  file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
