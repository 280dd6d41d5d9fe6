"""Atomic output, and the one rule for what afm may replace.

A result is either complete on disk or not there at all: everything is written
at a temporary name beside its target and renamed into place on success.

afm never deletes or replaces what it did not write. What it wrote in a folder is
listed in that folder's manifest, ``.afm-written`` (one '/'-separated path a line;
a listed folder covers everything under it), in one of two ways:

- a folder that is afm's (``--plots DIR``, ``images/<split>/``, ...) lists every file
  in it; it is replaced as a whole, and only while it holds nothing else
  (:func:`check_replaceable`);
- a folder shared with the user (``afm infer --out DIR``, ``labels/annotations/``)
  lists the entries afm put there; afm replaces or removes those and never the
  others (:class:`SharedFolder`).

A file the user names explicitly (``--json F``, ``afm fuse --out F``) is replaced:
naming it is the permission. Anything else in the way is refused with one line
before any work.

One run at a time writes an output: a command holds :func:`output_lock` on each
output it writes for the whole run, and a second run into the same place is
refused with one line naming the process that holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from afmcli.errors import AfmError, ParameterError, warn

MARKER = ".afm-written"
# An output's lock file, beside it: .<name>.afm-lock (see output_lock).
LOCK_SUFFIX = ".afm-lock"


def _written_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a '/'-separated relative path (links count as files)."""
    out = []
    for root, _dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / name).as_posix() for name in files]
    return out


def listed(folder: str | os.PathLike) -> set[str]:
    """The paths ``folder``'s manifest lists (empty without one)."""
    marker = Path(folder) / MARKER
    return set(marker.read_text().splitlines()) if marker.is_file() else set()


def _covered(path: str, ours: set[str]) -> bool:
    """``path`` or a folder above it is listed."""
    parts = path.split("/")
    return any("/".join(parts[:k]) in ours for k in range(1, len(parts) + 1))


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Files in ``folder`` that afm did not write there (sorted; [] if it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    ours = listed(folder) | {MARKER}
    return sorted(f for f in _written_files(folder) if not _covered(f, ours) and not _is_lock(f))


def _is_lock(path: str) -> bool:
    """A lock file of an afm run (writing beside it now, or killed: output_lock)."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(LOCK_SUFFIX)


def _check_parents(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AfmError(f"{path}: cannot write {what} there: {parent} is a file, not a folder")
            return


def _about(path: Path, option: str | None, problem: str, default: str = "the output") -> AfmError:
    """``path: problem``, ``{}`` in ``problem`` standing for ``option``, the parameter that gave
    the path (a command says its flag: afmcli.errors.ParameterError), else for ``default``."""
    if option is None:
        return AfmError(f"{path}: {problem.replace('{}', default)}")
    return ParameterError(f"{path}: {problem.replace('{}', '{' + option + '}')}", option)


def check_replaceable(path: str | os.PathLike, option: str | None = None) -> None:
    """Refuse, before any work, to write the folder ``path`` over anything but afm's own output.

    ``option`` names the parameter that gave the path, for the message.
    """
    path = Path(path)
    _check_parents(path, "a folder")
    if path.exists() and not path.is_dir():
        raise _about(path, option, "exists and is a file; {} must be a folder")
    foreign = foreign_files(path)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        holds = (f"holds {foreign[0]}{more}, which afm did not write; afm replaces only its own output "
                 "folders: choose another folder, or move those files away")
        if option is None:
            raise AfmError(f"{path}: {holds}")
        raise ParameterError(f"{path} ({{{option}}}): {holds}", option)


def check_output_file(path: str | os.PathLike, option: str | None = None) -> None:
    """Refuse, before any work, an output file path that is a folder or lies under a file
    (an existing file there is replaced: its name was given)."""
    path = Path(path)
    if path.is_dir():
        raise _about(path, option, "is a folder; {} must be a file name")
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
        with named_write_errors(path, tmp):
            yield tmp
            _put_in_place(tmp, path)
        done = True
    finally:
        _remove(tmp)
        if not done:
            _remove_folders(created)


@contextlib.contextmanager
def named_write_errors(path: str | os.PathLike, tmp: Path | None = None) -> Iterator[None]:
    """A write error (a full disk, a read-only file system) in the block, of the output
    ``path``, what is under it or its temporary ``tmp``, as one line naming ``path``: the OS
    says neither where (a full disk) nor which output (a temporary name). Errors about
    other files (inputs) pass as they are."""
    try:
        yield
    except OSError as exc:
        name = exc.filename
        ours = name is None or any(Path(os.path.abspath(name)).is_relative_to(os.path.abspath(p))
                                   for p in (path, tmp) if p is not None)
        if not ours:
            raise
        raise AfmError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _put_in_place(tmp: Path, path: Path) -> None:
    """Rename the written temporary ``tmp`` to ``path`` (a folder gets afm's marker and
    replaces only an afm folder)."""
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


def _lock_file(path: Path) -> Path:
    return path.parent / f".{path.name}{LOCK_SUFFIX}"


def _holder(fd: int) -> str:
    """Who holds a lock file: ``afm infer (pid 123)``, from what it wrote in it."""
    with contextlib.suppress(OSError, ValueError):
        pid, command = os.pread(fd, 4096, 0).decode().strip().split("\t", 1)
        return f"{command} (pid {int(pid)})"
    return "another afm run"  # it holds the lock but has not written its name yet


def _acquire(lock: Path, path: Path, command: str, option: str | None, wait: bool) -> int:
    """flock ``lock`` (created if missing); unless ``wait``, a held lock is refused in one line."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise AfmError(f"{path}: cannot write there ({exc.strerror})") from None
            # A folder afm may not write beside (a shared folder can be writable in a read-only
            # parent): unguarded, as before locks; a write that fails says so itself.
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            busy = f"{holder} is writing there now; wait for it to end, or choose another "
            if option is None:
                raise AfmError(f"{path}: {busy}output") from None
            raise ParameterError(f"{path}: {busy}{{{option}}}", option) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            return -1  # a file system without locks: unguarded, as before locks
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\t{command}\n".encode())
            return fd
        os.close(fd)  # the run before removed this file as we opened it: lock the new one


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, command: str, option: str | None = None,
                wait: bool = False) -> Iterator[None]:
    """Hold the output ``path`` (a folder or a file) for the block: another run that writes
    there meanwhile is refused with one line naming this one (``command``, its pid);
    ``option`` names the parameter that gave the path, for that line. ``wait``: wait for
    the other run to end instead (afm's cache: the later run then reuses what it wrote).

    The lock is the kernel's (``flock`` on ``.<name>.afm-lock`` beside ``path``), so it goes
    with the process however that ends: a killed run's lock file is taken over by the next
    run. The file is removed (and any folder created for it) when the block ends.
    """
    lock = _lock_file(Path(os.path.abspath(path)))  # `--out .` is locked beside the folder, in its parent
    created = [p for p in [lock.parent, *lock.parent.parents] if not p.exists()]
    try:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # under a file, say: the command refuses the path itself, with its own message
            fd = -1
        else:
            fd = _acquire(lock, Path(path), command, option, wait)
    except BaseException:
        _remove_folders(created)
        raise
    try:
        yield
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                lock.unlink()  # while still held: a run waiting on this file sees it gone and retries
            os.close(fd)
        _remove_folders(created)


@contextlib.contextmanager
def output_locks(command: str, **outputs: str | os.PathLike | None) -> Iterator[None]:
    """:func:`output_lock` on each of ``outputs`` that is given, by the parameter that gave it."""
    with contextlib.ExitStack() as stack:
        for option, path in outputs.items():
            if path is not None:
                stack.enter_context(output_lock(path, command, option))
        yield


def _remove_folders(created: list[Path]) -> None:
    """Remove the folders a failed write created, innermost first, if still empty."""
    for folder in created:
        with contextlib.suppress(OSError):
            folder.rmdir()


class SharedFolder:
    """A folder afm shares with the user: its manifest lists the entries afm wrote there.

    ``command`` names who writes (for messages); ``parameter`` the library parameter
    that gave the folder (a command says its flag, see afmcli.errors.ParameterError).
    """

    def __init__(self, path: str | os.PathLike, command: str, parameter: str):
        self.path, self.command, self.parameter = Path(path), command, parameter

    def owned(self) -> set[str]:
        return listed(self.path)

    def check(self, names: Iterable[str]) -> None:
        """Refuse, before any work, to write ``names`` where something afm did not write is."""
        if self.path.exists() and not self.path.is_dir():
            raise ParameterError(f"{self.path}: exists and is not a folder; choose another {{{self.parameter}}}",
                                 self.parameter)
        _check_parents(self.path, "a folder")
        ours = self.owned()
        for name in names:
            path = self.path / name
            if (path.exists() or path.is_symlink()) and not _covered(name, ours):
                raise ParameterError(f"{path}: exists and was not written by {self.command}; move it away or "
                                     f"choose another {{{self.parameter}}}", self.parameter)

    def record(self, names: Iterable[str]) -> None:
        """List ``names`` as afm's (with what is listed already)."""
        self._list(self.owned() | set(names))

    def _list(self, names: set[str]) -> None:
        """Write the manifest (atomically); none at all when nothing is listed, never an empty one."""
        if not names:
            (self.path / MARKER).unlink(missing_ok=True)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / MARKER, "".join(f"{n}\n" for n in sorted(names)))

    @contextlib.contextmanager
    def writing(self, names: Iterable[str], drop: Iterable[str] = ()) -> Iterator[Callable[[str], Path]]:
        """Yield ``stage(name)``, the temporary path of entry ``name``; when the block ends
        without error every staged entry is renamed into place, then the listed entries of
        ``drop`` that this write does not make (an earlier run's) are removed. The names
        are listed before they appear, so a kill never leaves one of afm's unlisted."""
        names = set(names)
        self.check(names)
        before = self.owned()
        created = [p for p in [self.path, *self.path.parents] if not p.exists()]
        self.record(names)
        try:
            with contextlib.ExitStack() as stack, named_write_errors(self.path):  # a full disk names the folder
                yield lambda name: stack.enter_context(atomic_path(self.path / name))
        except BaseException:  # nothing was renamed into place: the manifest and folders as they were
            self._list(before)
            _remove_folders(created)
            raise
        stale = set()
        for name in (set(drop) - names) & self.owned():
            path = self.path / name
            if path.is_dir() and foreign_files(path):
                warn(f"{path}: an earlier output of {self.command}, kept: it holds files afm did not write")
                continue
            _remove(path)
            stale.add(name)
        self._list(self.owned() - stale)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def dump_json(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    """Write ``obj`` as JSON at ``path`` as it is (a temporary being staged, say)."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def write_json(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    with atomic_path(path) as tmp:
        dump_json(tmp, obj, indent)


def cache_folder(*parts: str) -> Path:
    """afm's own folder under the user's cache (``$XDG_CACHE_HOME/afmcli``, default
    ``~/.cache/afmcli``): what afm derives from a user's files goes here, never beside them."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root, "afmcli", *parts)


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
