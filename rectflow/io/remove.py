"""The one place rectflow deletes anything, and what it will delete.

:func:`remove_made` removes a file or folder only when its name says rectflow made it:

* a temporary file of an atomic write (``.<name>.<hex>.tmp``, see :mod:`rectflow.io.files`);
* a resume snapshot or its temporary (``state/step-NNNNNNNN``, ``state/.tmp-step-NNNNNNNN``);
* a staging or lock sibling of an output (``.<name>.rectflow-new|done|old|lock``);
* anything inside a folder carrying rectflow's ``.rectflow`` marker.

Anything else is refused with :class:`~rectflow.errors.OutputError` (or skipped, with
``strict=False``), so no caller can delete a user's file by passing the wrong path. Symbolic
links are removed as links, never followed.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import OutputError

MARKER = ".rectflow"
_NAMES = (re.compile(r"^\..+\.tmp$"),
          re.compile(r"^\..+\.rectflow-(new|done|old|lock)$"))
_SNAPSHOT = re.compile(r"^(\.tmp-)?step-\d{8}$")


def made_by_rectflow(path: Path) -> bool:
    """Whether ``path``'s name, or a marked folder above it, says rectflow made it."""
    path = Path(path)
    if any(p.match(path.name) for p in _NAMES):
        return True
    if _SNAPSHOT.match(path.name) and path.parent.name == "state":
        return True
    return any((parent / MARKER).is_file() for parent in path.parents
               if parent != Path(parent.anchor))


def remove_made(path: str | Path, *, strict: bool = True) -> bool:
    """Delete ``path`` (file, link or folder tree) if rectflow made it; True if it was there
    and is gone. Refuses (``strict``) or skips anything else."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if not made_by_rectflow(path):
        if strict:
            raise OutputError(f"refusing to delete {path}: rectflow did not make it")
        return False
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return True


def remove_marked_folder(path: str | Path) -> bool:
    """Delete a folder rectflow made as a whole (its ``.rectflow`` marker or its name says
    so), its contents first and the marker last, so a removal cut short by a crash leaves a
    folder still recognised as rectflow's and finished next time. Refuses anything else."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if not ((path / MARKER).is_file() or made_by_rectflow(path)):
        raise OutputError(f"refusing to delete {path}: rectflow did not make it")
    for entry in path.iterdir():
        if entry.name != MARKER:
            remove_made(entry)   # inside a marked folder
    (path / MARKER).unlink(missing_ok=True)
    path.rmdir()
    return True
