"""Output folders that no command can lose: ownership markers, checks before writing, and
staged replacement.

Every folder rectflow creates holds a marker file ``.rectflow`` (a
:class:`~rectflow.io.remove.Marker`: ``kind``, ``created``, ``rectflow`` version and a random
``token``). Only a real folder with a marker of the right kind
is ever replaced or resumed, and only when it holds no symbolic link (rectflow makes none). What
rectflow may delete, and how it knows, is :mod:`rectflow.io.remove`.

A replacing (``overwrite``) run is written into the hidden sibling ``.<name>.rectflow-new`` and
swapped in only when it succeeded, by one atomic ``renameat2(RENAME_EXCHANGE)`` where the file
system has it, else by renames through ``.<name>.rectflow-done`` and ``.<name>.rectflow-old``.
A crash leaves the old or the new run under ``<name>``; in the rename fallback it may leave it
under ``-done`` / ``-old`` for an instant, and :func:`recover` (run at the start of every
:func:`staged_output` and :func:`ensure_output`) puts it back. Everything that changes ``out``
runs while this process holds :class:`~rectflow.io.lock.FolderLock` on it.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from .files import atomic_write_bytes
from ..errors import OutputError
from .lineage import named_inputs
from .lock import check_lock_file, holds_lock
from .record import JsonLine
from .remove import (JOURNAL, Marker, file_list_problem, foreign_entries, marker_or_why,
                     read_marker, register, remove_made, remove_marked_folder)

MARKER = ".rectflow"
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_STAGES = ("new", "done", "old")


# ------------------------------------------------------------------------------- ownership
def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"kind must be a short lowercase name like 'model', got {kind!r}")
    return kind


def write_marker(folder: str | Path, kind: str, **extra) -> None:
    """Mark ``folder`` (which must exist) as a rectflow folder of ``kind`` with a fresh random
    token (``extra``: the other fields of :class:`~rectflow.io.remove.Marker`, e.g. ``run``),
    written atomically and never through a link."""
    marker = Marker(kind=_check_kind(kind), rectflow=__version__,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    token=secrets.token_hex(16), **extra)
    atomic_write_bytes(Path(folder) / MARKER, marker.line())


def make_folder(folder: str | Path, kind: str, **extra) -> Path:
    """Create the new folder ``folder`` (its parent must exist), registered as made by this
    process, and mark it."""
    folder = Path(folder)
    folder.mkdir()
    register(folder)
    write_marker(folder, kind, **extra)
    return folder


def is_owned(path: str | Path, kind: str | None = None) -> bool:
    """True when ``path`` is a real folder rectflow made (of ``kind``, when given)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    marker = read_marker(path)
    return marker is not None and (kind is None or marker.kind == kind)


def is_empty(folder: str | Path) -> bool:
    """True when ``folder`` holds nothing at all but (at most) its own valid marker; any other
    entry, whatever its name, is someone's."""
    rest = [p for p in Path(folder).iterdir() if p.name not in (MARKER, JOURNAL)]
    return not rest and (not os.path.lexists(Path(folder) / MARKER) or
                         read_marker(folder) is not None)


# ----------------------------------------------------------------------------------- checks
def _real(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _refuse_special(out: Path, real: Path) -> None:
    if real == Path(real.anchor) or os.path.ismount(real):
        raise OutputError(f"out {out} is a filesystem root or mount point; choose a folder "
                          "inside it")
    places = (("the current working folder", Path.cwd()), ("the home folder", Path.home()))
    for name, place in places:
        place = _real(place)
        if place == real or place.is_relative_to(real):
            verb = "is" if place == real else "contains"
            raise OutputError(f"out {out} {verb} {name} ({place}); choose a folder inside it")


def _broad(folder: Path) -> bool:
    """A folder that is or holds the working or home folder (a data root like ``.``): what an
    input merely names there does not forbid every output below it."""
    return any(_real(p).is_relative_to(folder) for p in (Path.cwd(), Path.home()))


def _refuse_inputs(out: Path, real: Path, inputs) -> None:
    """``out`` is not, does not contain and does not lie inside an input, nor anything an input
    names (its teacher, pairs, init or data, transitively: :mod:`.lineage`)."""
    for given in inputs:
        if given is None:
            continue
        for path, named_by, data in [(Path(given), None, False), *named_inputs(given)]:
            inp = _real(path)
            what = f"the input {given}" if named_by is None else \
                f"{path}, which the input {given} names ({named_by})"
            if inp == real:
                raise OutputError(f"out {out} is {what}; choose another folder")
            if inp.is_relative_to(real):
                raise OutputError(f"out {out} contains {what}; choose another folder")
            if real.is_relative_to(inp) and not (data and _broad(inp)):
                raise OutputError(f"out {out} lies inside {what}; choose another folder")


def _refuse_foreign_siblings(out: Path) -> None:
    """The names rectflow keeps beside ``out`` (its lock and staging folders) hold nothing
    rectflow did not make."""
    check_lock_file(out)
    for stage in _STAGES:
        path = sibling(out, stage)
        if os.path.lexists(path) and not (is_owned(path) or _empty_dir(path)):
            raise OutputError(f"{path} is in the way and was not made by rectflow; move it "
                              "away")


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _refuse_links(out: Path, doing: str) -> None:
    """rectflow makes no symbolic links: one inside a folder it is to replace or resume is
    someone's, and writing or deleting through it could reach anything."""
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                raise OutputError(f"out {out} holds the symbolic link "
                                  f"{os.path.join(root, name)}, which rectflow never makes; "
                                  f"refusing to {doing} it")


def writable_parent(path: Path) -> Path:
    """The nearest existing ancestor of ``path``, which must be a folder this process can write
    into (``path`` can then be created); OutputError otherwise."""
    parent = Path(os.path.abspath(path)).parent
    while not os.path.lexists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {path}: {parent} is not writable")
    return parent


def _check_writable(out: Path) -> None:
    writable_parent(out)
    for place in (out,) if out.is_dir() else ():
        if not os.access(place, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write to {out}: {place} is not writable")


def _check_contents(out: Path, kind: str, overwrite: bool, resume: bool) -> None:
    """``out`` may be used: absent or empty, or (when replaced or resumed) rectflow's, of
    ``kind``."""
    if out.is_symlink():
        raise OutputError(f"out {out} is a symbolic link; pass the folder it points to")
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(f"out {out} is a file; a folder is wanted")
    if not out.is_dir() or is_empty(out):
        return
    if not (overwrite or resume):
        raise OutputError(f"out {out} already exists and is not empty; pass overwrite to "
                          "replace it or resume to continue it")
    found, doing = marker_or_why(out), "replace" if overwrite else "resume"
    if isinstance(found, str):      # a marker that is not one: never taken for a 0.1 folder
        _refuse_unreadable(found, out, doing)
    marker = found or _legacy_marker(out)
    if marker is None:
        raise OutputError(f"out {out} was not made by rectflow (no {MARKER} marker); refusing "
                          f"to {doing} it: move it away or choose another folder")
    if marker.kind != kind:
        raise OutputError(f"out {out} holds a rectflow {marker.kind!r} folder, not "
                          f"{kind!r}; refusing to {doing} it")
    _refuse_links(out, doing)
    _refuse_unreadable(file_list_problem(out), out, doing)
    foreign = foreign_entries(out) if overwrite else []
    if foreign:
        raise OutputError(f"out {out} holds {', '.join(sorted(foreign)[:3])}, which rectflow did "
                          "not write; move it away before replacing the run")


def _refuse_unreadable(why: str | None, out: Path, doing: str) -> None:
    """A marker or ``.rectflow-files`` rectflow cannot read: it cannot tell what is its own."""
    if why:
        raise OutputError(f"{why}; rectflow cannot tell its files in {out} from others', so it "
                          f"refuses to {doing} it: move the folder away or choose another")


_LEGACY = (("config.json", "rectflow/checkpoint", "model"), ("plan.json", "rectflow/pairs",
                                                               "pairs"),
           ("resolved.json", None, "run"), ("compare.json", "rectflow/compare", "compare"))
_ABSENT = object()


@dataclass(frozen=True)
class _Legacy(JsonLine):
    """What tells a rectflow 0.1 record: a ``format``, or (resolved.json) any ``preset``."""
    LENIENT = True
    format: str | None = None
    preset: Any = _ABSENT


def _legacy_marker(out: Path) -> Marker | None:
    """A folder written by rectflow 0.1 (before markers) is recognised by its own record."""
    for name, fmt, kind in _LEGACY:
        f = out / name
        if f.is_file() and not f.is_symlink() and f.stat().st_size < 1 << 20:
            try:
                rec = _Legacy.maybe(f.read_bytes(), str(f))
            except OSError:
                continue
            if rec is not None and (fmt is None and rec.preset is not _ABSENT
                                    or (rec.format or "").startswith(fmt or "-")):
                return Marker(kind=kind)
    return None


def check_output(out: str | Path, *, inputs=(), overwrite: bool = False, kind: str,
                 resume: bool = False) -> Path:
    """Refuse an output folder that cannot be written without risk; touches nothing.

    Refused always: ``out`` is, contains or lies inside one of ``inputs`` or anything they
    name (paths, symlinks resolved), is or contains the working or home folder, is a filesystem
    root or mount point, is a symlink or a file, its lock or staging names beside it hold
    something rectflow did not make, or its parent cannot be written. Refused unless
    ``overwrite`` or ``resume``: ``out`` is not empty. Refused even then: it has no marker of
    ``kind``, or holds a symbolic link.
    """
    _check_kind(kind)
    if overwrite and resume:
        raise OutputError("overwrite=True and resume=True contradict each other; pass one")
    out = Path(out)
    real = _real(out)
    _refuse_special(out, real)
    _refuse_inputs(out, real, inputs)
    _check_contents(out, kind, overwrite, resume)
    _check_writable(out)
    _refuse_foreign_siblings(out)
    return out


# ------------------------------------------------------------------------ staged replacement
def sibling(out: str | Path, stage: str) -> Path:
    """The hidden sibling ``.<name>.rectflow-<stage>`` of ``out`` (stage: new, done, old).
    Ranks other than the main one write a staged run into ``sibling(out, "new")``."""
    if stage not in _STAGES:
        raise ValueError(f"stage must be one of {_STAGES}, got {stage!r}")
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.rectflow-{stage}"


def _require_lock(out: Path, caller: str) -> None:
    if not holds_lock(out):
        raise RuntimeError(f"{caller}({out}) must run under FolderLock({out})")


def _discard(path: Path) -> None:
    """Remove a staging folder if rectflow owns it (or it is empty), its marker last, so a
    removal cut short by a crash is still recognised and finished next time."""
    if is_owned(path) or _empty_dir(path):
        with contextlib.suppress(OutputError):   # holding someone's file: left whole
            remove_marked_folder(path)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def recover(out: str | Path) -> None:
    """Finish or undo a replacement that a killed process left half done, then remove its
    leftover staging folders. Call only while holding ``FolderLock(out)``."""
    out = Path(os.path.abspath(out))
    if not os.path.lexists(out):
        for stage in ("done", "old"):   # the finished new run first, else the old one back
            if is_owned(sibling(out, stage)):
                os.rename(sibling(out, stage), out)
                _fsync_dir(out.parent)
                break
    for stage in _STAGES:
        if os.path.lexists(sibling(out, stage)):
            _discard(sibling(out, stage))


_libc = None


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); OSError where the
    system or file system cannot."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


def _commit(out: Path, new: Path) -> None:
    if not os.path.lexists(out):
        os.rename(new, out)
        _fsync_dir(out.parent)
        return
    try:
        exchange(new, out)               # now `new` holds the old run
        trash = new
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
            raise
        done, trash = sibling(out, "done"), sibling(out, "old")
        os.rename(new, done)
        os.rename(out, trash)
        os.rename(done, out)             # recover() finishes this if we die just before
    _fsync_dir(out.parent)
    _discard(trash)


@contextlib.contextmanager
def staged_output(out: str | Path, kind: str, *, overwrite: bool = False, commit_on=()):
    """Write a run into a hidden sibling folder; yield it; swap it in under ``out`` only when
    the block succeeds (or raises one of ``commit_on``, e.g. ``(StageInterrupted,)`` to keep a
    resumable partial run). On any other exception the staged folder is removed and ``out`` is
    as it was. An existing ``out`` is replaced only if ``overwrite`` and it is rectflow's, of
    ``kind`` (or empty). Main process only, under ``FolderLock(out)``."""
    _check_kind(kind)
    out = Path(out)
    _require_lock(out, "staged_output")
    recover(out)
    _check_contents(out, kind, overwrite, resume=False)
    new = sibling(out, "new")
    if os.path.lexists(new):
        raise OutputError(f"{new} is in the way and was not made by rectflow; remove it")
    try:
        new.parent.mkdir(parents=True, exist_ok=True)
        make_folder(new, kind)
    except OSError as e:
        remove_made(new, strict=False)
        raise OutputError(f"cannot create {new}: {e.strerror}") from e
    try:
        yield new
    except commit_on:
        _commit(out, new)
        raise
    except BaseException:
        _discard(new)
        raise
    _check_contents(out, kind, overwrite, resume=False)   # nobody put files there meanwhile
    _commit(out, new)


def ensure_output(out: str | Path, kind: str, *, resume: bool = False) -> Path:
    """Create ``out`` (or take an empty one) and mark it as ``kind``; with ``resume`` an
    existing run of ``kind`` is accepted as it is. Main process only, under
    ``FolderLock(out)``."""
    _check_kind(kind)
    out = Path(out)
    _require_lock(out, "ensure_output")
    recover(out)
    _check_contents(out, kind, overwrite=False, resume=resume)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if read_marker(out) is None:
            write_marker(out, kind)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror}") from e
    return out
