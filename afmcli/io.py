"""Atomic output, and the rule for replacing folders.

A result is either complete on disk or not there at all: everything is written
at a temporary name beside its target and renamed into place on success.

afm never deletes what it did not write. A folder that afm writes gets a marker
file (``.afm-written``) listing the files it put there; such a folder may be
replaced as a whole later, as long as it holds nothing else. A non-empty folder
without the marker, or with files the marker does not list, is refused with one
line before any work (:func:`check_replaceable`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from afmcli.errors import AfmError

MARKER = ".afm-written"
SHOW_FOREIGN = 3


def _written_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a '/'-separated relative path (links count as files)."""
    out = []
    for root, _dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / name).as_posix() for name in files]
    return out


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Files in ``folder`` that afm did not write there (sorted; [] if it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    marker = folder / MARKER
    ours = set(marker.read_text().splitlines()) | {MARKER} if marker.is_file() else set()
    return sorted(set(_written_files(folder)) - ours)


def _check_parents(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AfmError(f"{path}: cannot write {what} there: {parent} is a file, not a folder")
            return


def check_replaceable(path: str | os.PathLike, option: str | None = None) -> None:
    """Refuse, before any work, to write the folder ``path`` over anything but afm's own output.

    ``option`` names the command-line option that gave the path, for the message.
    """
    path = Path(path)
    given = f" ({option})" if option else ""
    _check_parents(path, "a folder")
    if path.exists() and not path.is_dir():
        raise AfmError(f"{path}: exists and is a file; {option or 'the output'} must be a folder")
    foreign = foreign_files(path)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise AfmError(f"{path}{given}: holds {foreign[0]}{more}, which afm did not write; afm replaces "
                       f"only its own output folders: choose another folder, or move those files away")


def check_output_file(path: str | os.PathLike, option: str | None = None) -> None:
    """Refuse, before any work, an output file path that is a folder or lies under a file."""
    path = Path(path)
    if path.is_dir():
        raise AfmError(f"{path}: is a folder; {option or 'the output'} must be a file name")
    _check_parents(path, "a file")


def _stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of ``path`` that a killed afm left (only our own names)."""
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.([a-z0-9_]{{8}}\.tmp|old)$")
    return [p for p in path.parent.iterdir() if pattern.match(p.name)]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    Works for a file or a folder written at the temporary path. A folder gets
    afm's marker and replaces an existing folder only when that one is afm's
    (:func:`check_replaceable`). On error the temporary (and any parent folder
    created for it) is removed and ``path`` is left as it was. Temporaries left
    by a killed run are removed first.
    """
    path = Path(path)
    if path.is_dir():
        check_replaceable(path)
    _check_parents(path, "output")
    for stale in _stale_temporaries(path):
        _remove(stale)
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    done = False
    try:
        yield tmp
        if tmp.is_dir():
            files = _written_files(tmp)
            (tmp / MARKER).write_text("".join(f"{f}\n" for f in sorted(files)))
            if path.exists() and not path.is_dir():
                raise AfmError(f"{path}: exists and is a file; cannot write a folder there")
            if path.is_dir():
                check_replaceable(path)  # again: something may have appeared meanwhile
                # os.replace cannot replace a non-empty folder: move the old one aside first.
                old = path.with_name(f".{path.name}.old")
                _remove(old)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            if path.is_dir():
                raise AfmError(f"{path}: is a folder; cannot write a file there")
            os.replace(tmp, path)
        done = True
    finally:
        _remove(tmp)
        if not done:
            for folder in created:  # innermost first; only the ones we made, if still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)


def read_json(path: str | os.PathLike):
    """Load a JSON file; a missing, empty or malformed file is an AfmError."""
    path = Path(path)
    if not path.is_file():
        raise AfmError(f"{path}: no such file")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise AfmError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise AfmError(f"{path}: not a text file (not UTF-8 JSON)") from None
