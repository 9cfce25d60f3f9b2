"""One writer per output folder.

:class:`FolderLock` takes an exclusive ``flock`` on ``<parent>/.<name>.rectflow-lock``, beside
the output rather than in it, so it guards the name ``out`` across a staged swap of the folder.
The holder writes its pid, host, command line and start time into the file (a :class:`Holder`
line); a second process
fails at once with :class:`~rectflow.errors.OutputLocked` naming them. The kernel drops a flock
when its holder dies (even by SIGKILL), so a dead holder's lock is simply taken over. The file
is removed on a clean release; a taker checks that the file it locked is still the one under
that name, so removal cannot let two holders in.

The lock file is opened with ``O_NOFOLLOW`` and truncated only once it is known to be rectflow's:
a regular file that is empty or holds a holder record. A link, or any other file, under that
name is refused (:func:`check_lock_file`, run by ``check_output`` before anything is written).

In a distributed run only the main process takes the lock (``is_main``); the other ranks of the
same run do not try, so they count as one writer. The lock is re-entrant within a process.
"""
from __future__ import annotations

import contextlib

import fcntl
import os
import stat
import shlex
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import OutputError, OutputLocked
from .record import JsonLine
from .remove import register, remove_made

_HELD: dict[str, list] = {}   # lock file -> [fd, depth] for the locks this process holds


def lock_path(out: str | Path) -> Path:
    """Where the lock of ``out`` lives: ``<real parent>/.<name>.rectflow-lock``."""
    out = Path(os.path.abspath(out))
    return out.parent.resolve() / f".{out.name}.rectflow-lock"


def holds_lock(out: str | Path) -> bool:
    """True when this process holds ``FolderLock(out)``."""
    return str(lock_path(out)) in _HELD


@dataclass(frozen=True)
class Holder(JsonLine):
    """Who holds a lock: the one JSON line of its lock file, with exactly these keys."""
    FILENAME = "lock file"
    EXACT = True

    pid: int
    host: str
    since: str      # ISO 8601, local time with its offset
    command: str    # the command line, at most 300 characters


def _holder() -> Holder:
    argv = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
            *sys.argv[1:]]
    return Holder(pid=os.getpid(), host=socket.gethostname(),
                  since=datetime.now().astimezone().isoformat(timespec="seconds"),
                  command=shlex.join(argv)[:300])


def _record(fd: int) -> Holder | bool | None:
    """The holder in the lock file ``fd``: a :class:`Holder`, False for an empty file (a
    holder that has not written yet), None for anything rectflow did not write."""
    try:
        text = os.pread(fd, 4096, 0)
    except OSError:
        return None
    return Holder.maybe(text) if text else False


def _describe(fd: int) -> str:
    info = _record(fd)
    if not info:
        return "its details are not written yet"
    return f"pid {info.pid} on {info.host}, since {info.since}: {info.command}"


def _foreign(path: Path) -> str:
    return (f"{path} is where rectflow keeps the lock of this output, and rectflow did not make "
            "it; move it away")


def check_lock_file(out: str | Path) -> None:
    """Refuse when the lock file name of ``out`` holds anything but rectflow's own lock: a
    symbolic link, a folder, or a file that is not a holder record. Touches nothing."""
    path = lock_path(out)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(_foreign(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise OutputError(f"cannot read the lock file {path}: {e.strerror}") from e
    try:
        if _record(fd) is None:
            raise OutputError(_foreign(path))
    finally:
        os.close(fd)


class FolderLock:
    """``with FolderLock(out, is_main=acc.is_main_process):`` around everything that writes
    ``out``. Raises OutputLocked when another process holds it."""

    def __init__(self, out: str | Path, *, is_main: bool = True):
        self.out = Path(out)
        self.is_main = bool(is_main)
        self.path = lock_path(out)

    def __enter__(self) -> FolderLock:
        if not self.is_main:
            return self
        key = str(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path.parent}: {e.strerror}") from e
        for _ in range(5):
            fd = self._open_locked()
            try:
                now, st = os.fstat(fd), os.lstat(self.path)
                same = (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
            except FileNotFoundError:
                same = False
            if not same:          # released and removed between our open and our flock
                os.close(fd)
                continue
            if _record(fd) is None:    # not a lock rectflow wrote: never truncate it
                os.close(fd)
                raise OutputError(_foreign(self.path))
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder().line(), 0)
            os.fsync(fd)
            register(self.path)
            _HELD[key] = [fd, 1]
            return self
        raise OutputLocked(f"cannot lock {self.out}: {self.path} keeps being replaced")

    def _open_locked(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            if os.path.islink(self.path) or os.path.isdir(self.path):
                raise OutputError(_foreign(self.path)) from None
            raise OutputError(f"cannot create the lock file {self.path}: {e.strerror}") from e
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(_foreign(self.path))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise OutputLocked(f"out {self.out} is being written by another rectflow process "
                               f"({holder}); wait for it to end or stop it, or choose another "
                               "folder") from None
        except OSError as e:
            os.close(fd)
            raise OutputError(f"cannot lock {self.path}: {e.strerror}") from e
        return fd

    def __exit__(self, *exc) -> None:
        if not self.is_main:
            return
        entry = _HELD[str(self.path)]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[str(self.path)]
            with contextlib.suppress(OSError):   # a lock file left behind is taken over
                remove_made(self.path, strict=False)
            os.close(entry[0])
