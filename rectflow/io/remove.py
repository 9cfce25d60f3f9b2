"""The one place rectflow deletes anything, and how it knows what it made.

Ownership is decided by what rectflow made or recorded, never by a name:

* **made by this process**: every file or folder rectflow creates to finish later or to throw
  away (the temporary file of an atomic write, a snapshot being written, a staging sibling, its
  lock file) is registered with its device and inode the moment it exists (:func:`register`).
  It is rectflow's while the entry under that name is still that one (``lstat``).
* **a marked folder and its record**: a real folder (not a link) holding a regular-file marker
  ``.rectflow`` (a :class:`Marker`: a ``kind`` and a random ``token``, :func:`read_marker`) is
  rectflow's, and so is every file its record ``.rectflow-files`` lists: each file rectflow
  writes below the nearest marked folder (up to :data:`DEPTH` levels) appends its relative path
  there (:func:`record_written`). A marked folder is removed only when it holds nothing else
  (:func:`foreign_entries`); a folder marked before tokens existed counts as rectflow's whole.
* **left by an earlier, killed process**: a temporary file whose name carries the token of the
  marked folder it lies under (``.<name>.<token[:8]>-<hex>.tmp``, see
  :mod:`rectflow.io.files`), and a resume snapshot ``state/...`` that is itself marked
  (kind ``snapshot``) with the token of the run folder it lies in.
* **an empty folder** (nothing in it at all, or only such temporary files) holds no data.

A file written outside any marked folder (samples beside a model, a report named by ``--out``)
is listed in a ``.rectflow-files`` record of its own folder, so ``--overwrite`` replaces it
later (:func:`written`) but never a user's file of the same name.

Everything else is refused with :class:`~rectflow.errors.OutputError` (or skipped, with
``strict=False``). rectflow makes no symbolic links, so a link is never its: a link is neither
removed nor followed, and nothing is removed through a linked parent folder.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, OutputError
from .record import JsonLine

MARKER = ".rectflow"
JOURNAL = ".rectflow-files"
SNAPSHOT = "snapshot"
DEPTH = 4          # levels above a written file where its marked folder is looked for
_MADE: dict[str, tuple[int, int]] = {}   # absolute path -> (st_dev, st_ino) made by this process
_TOKEN = re.compile(r"[0-9a-f]{16,64}")


@dataclass(frozen=True)
class Marker(JsonLine):
    """A folder's ownership marker ``.rectflow``, one JSON line (written by
    :func:`rectflow.io.folders.write_marker`)."""
    FILENAME = MARKER

    kind: str                      # model, pairs, run, snapshot, ...
    rectflow: str | None = None    # the version that marked it
    created: str | None = None     # when (ISO 8601, UTC)
    token: str | None = None       # random; absent in folders marked before tokens existed
    run: str | None = None         # a snapshot: the token of the run folder it belongs to

    def check(self) -> None:
        for name in ("token", "run"):
            value = getattr(self, name)
            if value is not None and not _TOKEN.fullmatch(value):
                raise ValueError(f"field {name!r} must be 16 to 64 hex digits, got {value!r}")


class FileList:
    """The record ``.rectflow-files`` of a folder (:data:`JOURNAL`): the files rectflow wrote
    below it, one path relative to it a line, UTF-8. Not JSON: each write appends one line
    (``O_APPEND``, so several processes may record at once), nothing rewrites it."""
    FILENAME = JOURNAL

    @staticmethod
    def line(rel: str) -> bytes:
        return (rel + "\n").encode("utf-8")

    @staticmethod
    def parse(data: bytes, where: str) -> tuple[set[str], str | None]:
        """The paths ``data`` lists, and why it is malformed (its first line that is not a
        plain relative path, naming ``where``), or None."""
        names, why = set(), None
        for i, raw in enumerate(data.removesuffix(b"\n").split(b"\n") if data else (), 1):
            try:
                rel = raw.decode("utf-8")
            except UnicodeDecodeError:
                rel = ""
            if rel and "\0" not in rel and not os.path.isabs(rel) \
                    and os.path.normpath(rel) == rel and rel.split(os.sep)[0] != "..":
                names.add(rel)
            elif why is None:
                why = f"{where} is malformed: line {i} is not a path relative to its folder"
        return names, why


# ------------------------------------------------------------------------------- records
def register(path: str | Path) -> None:
    """Record that this process just made ``path`` (file or folder)."""
    st = os.lstat(path)
    _MADE[os.path.abspath(path)] = (st.st_dev, st.st_ino)


def forget(path: str | Path) -> None:
    """``path`` was renamed away or removed: the name no longer holds what was registered."""
    _MADE.pop(os.path.abspath(path), None)


def _registered(path: str | Path, st: os.stat_result) -> bool:
    return _MADE.get(os.path.abspath(path)) == (st.st_dev, st.st_ino)


def read_marker(folder: str | Path) -> Marker | None:
    """The marker of ``folder``, or None when there is no valid one (a symlinked, oversized
    or malformed marker does not count)."""
    marker = marker_or_why(folder)
    return marker if isinstance(marker, Marker) else None


def marker_or_why(folder: str | Path) -> Marker | str | None:
    """The marker of ``folder``; None when there is none (a symbolic link is none: rectflow
    makes no links); else one line saying why what is there is not one."""
    path = Path(folder) / MARKER
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > 4096:
            return f"{path} is {_what(st)}, not a marker rectflow writes"
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            text = f.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return f"cannot read {path}: {e.strerror}"
    try:
        return Marker.from_text(text, str(path))
    except CheckpointError as e:
        return str(e)


def _what(st: os.stat_result) -> str:
    return ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "a folder"
            if stat.S_ISDIR(st.st_mode) else "over 4 KiB" if stat.S_ISREG(st.st_mode)
            else "not a regular file")


def token_of(folder: str | Path) -> str | None:
    """The random token of ``folder``'s marker (None: no marker, or one written before tokens
    existed)."""
    marker = read_marker(folder)
    return marker.token if marker else None     # checked when read (Marker.check)


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def marked_root(path: str | Path) -> Path | None:
    """The nearest real folder above ``path`` (at most :data:`DEPTH` levels) whose marker
    has a token; None when there is none, or a link is met on the way."""
    for folder in list(Path(os.path.abspath(path)).parents)[:DEPTH]:
        if not _real_dir(folder):
            return None
        if token_of(folder) is not None:
            return folder
    return None


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def record_written(path: str | Path) -> None:
    """Record in the nearest marked folder's ``.rectflow-files`` that rectflow wrote ``path``
    (one ``O_APPEND`` line, so several processes may record at once)."""
    path = Path(os.path.abspath(path))
    root = marked_root(path)
    if root is None:   # a loose file (samples beside a model, a report): its own folder's record
        if path.name != JOURNAL and _real_dir(path.parent):
            _append(path.parent / JOURNAL, FileList.line(path.name))
        return
    if path.parent == root and path.name in (MARKER, JOURNAL):
        return
    _append(root / JOURNAL, FileList.line(os.path.relpath(path, root)))


def written(path: str | Path) -> bool:
    """Whether rectflow wrote the regular file ``path``: listed in the record of its marked
    folder or, for a loose file, of its own folder (never a link, never by its name alone)."""
    path = Path(os.path.abspath(path))
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    root = marked_root(path)
    if root is not None:
        return os.path.relpath(path, root) in recorded(root)
    return _real_dir(path.parent) and path.name in recorded(path.parent)


def recorded(folder: str | Path) -> set[str]:
    """The relative paths the record of the marked ``folder`` lists (its malformed lines
    vouch for nothing)."""
    return _file_list(folder)[0]


def file_list_problem(folder: str | Path) -> str | None:
    """Why the record ``.rectflow-files`` of ``folder`` is not one rectflow wrote (a link, a
    folder, unreadable, a line that is not a relative path); None when it is, or is absent."""
    return _file_list(folder)[1]


def _file_list(folder: str | Path) -> tuple[set[str], str | None]:
    path = Path(folder) / JOURNAL
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return set(), f"{path} is {_what(st)}, not the record of files rectflow writes"
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            return FileList.parse(f.read(), str(path))
    except (FileNotFoundError, NotADirectoryError):
        return set(), None
    except OSError as e:
        return set(), f"cannot read {path}: {e.strerror}"


def foreign_entries(folder: str | Path) -> list[str]:
    """What the marked ``folder`` holds that rectflow did not record (relative paths): links,
    and files that are neither listed in its record, nor its own temporary files, nor inside
    a marked folder below it that vouches for them. Nothing for a folder marked before tokens
    existed (all of it is rectflow's)."""
    folder = Path(folder)
    if token_of(folder) is None:
        return []
    names, foreign = recorded(folder), []
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        for d in list(dirs):
            sub = Path(root, d)
            if sub.is_symlink() or _marked(sub) is not None:
                dirs.remove(d)
                foreign += [os.path.normpath(os.path.join(rel, d, x))
                            for x in ([""] if sub.is_symlink() else foreign_entries(sub))]
        for f in files:
            name = os.path.normpath(os.path.join(rel, f))
            if name not in (MARKER, JOURNAL) and name not in names or \
                    os.path.islink(os.path.join(root, f)):
                if not own_temp(Path(root, f)):
                    foreign.append(name)
    return foreign


def own_temp(path: Path) -> bool:
    """A temporary file a killed process left under a marked folder: its name carries the
    token of that folder."""
    root = marked_root(path)
    token = token_of(root) if root is not None else None
    return (token is not None and path.name.startswith(".") and path.name.endswith(".tmp")
            and f".{token[:8]}-" in path.name and not path.is_symlink())


def stale_temps(folder: str | Path) -> list[Path]:
    """The temporary files of writes a killed process left in the marked ``folder``."""
    folder = Path(folder)
    return [p for p in folder.iterdir() if own_temp(p) and not p.is_symlink() and p.is_file()]


def _marked(path: Path) -> Marker | None:
    """The marker of a real folder rectflow marked; a snapshot counts only inside the run
    folder whose token it carries."""
    marker = read_marker(path)
    if marker is None or marker.kind != SNAPSHOT:
        return marker
    run = path.parent.parent
    token = token_of(run) if _real_dir(path.parent) and _real_dir(run) else None
    return marker if token is not None and marker.run == token else None


def is_made(path: str | Path) -> bool:
    """Whether rectflow made ``path`` by the rules of this module (see its docstring)."""
    return _ownership(Path(os.path.abspath(path))) is not None


def _ownership(path: Path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if _registered(path, st):
        return "made"
    if stat.S_ISLNK(st.st_mode) or os.path.islink(path.parent):
        return None
    if stat.S_ISDIR(st.st_mode):
        marker = _marked(path)
        if marker is not None:
            return marker
        # nothing in it but rectflow's own temporary files (a kill before it was marked)
        return "empty" if all(e.is_file(follow_symlinks=False) and own_temp(Path(e.path))
                              for e in os.scandir(path)) else None
    return "temp" if stat.S_ISREG(st.st_mode) and own_temp(path) else None


# ------------------------------------------------------------------------------- removing
def _refuse(path: Path, strict: bool, why: str = "rectflow did not make it") -> bool:
    if strict:
        raise OutputError(f"refusing to delete {path}: {why}")
    return False


def remove_made(path: str | Path, *, strict: bool = True) -> bool:
    """Delete ``path`` (file or folder) if rectflow made it; True if it was there and is gone.
    Refuses (``strict``) or skips anything else."""
    path = Path(os.path.abspath(path))
    if not os.path.lexists(path):
        return False
    how = _ownership(path)
    if how is None:
        return _refuse(path, strict)
    if not _real_dir(path):
        path.unlink()
    elif how == "empty":
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False) and own_temp(Path(entry.path)):
                os.unlink(entry.path)
        try:
            path.rmdir()          # fails if anything else appeared meanwhile
        except OSError:
            return _refuse(path, strict, "something appeared in it")
    elif isinstance(how, Marker):
        return _remove_marked(path, strict)
    else:
        shutil.rmtree(path)
    forget(path)
    return True


def _remove_marked(path: Path, strict: bool) -> bool:
    """All or nothing: a marked folder holding anything rectflow did not record is left whole.
    Contents first, then the record, the marker last, so a removal cut short by a crash leaves
    a folder still recognised as rectflow's and finished next time."""
    foreign = foreign_entries(path)
    if foreign:
        return _refuse(path, strict, f"it holds {', '.join(sorted(foreign)[:3])}, which "
                                     "rectflow did not write")
    for entry in os.scandir(path):
        if entry.name in (MARKER, JOURNAL):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    (path / JOURNAL).unlink(missing_ok=True)
    (path / MARKER).unlink(missing_ok=True)
    path.rmdir()
    forget(path)
    return True


def remove_marked_folder(path: str | Path) -> bool:
    """Delete a folder rectflow made as a whole (marked, or made by this process, or empty).
    Refuses anything else; False when there is no real folder at ``path``."""
    path = Path(os.path.abspath(path))
    if not _real_dir(path):
        return False
    return remove_made(path)
