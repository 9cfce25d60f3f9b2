"""Names read from a stored folder (a pairs manifest lists its shards) must stay inside it."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import CheckpointError


def plain_member(folder: str | Path, name: str, *, must_exist: bool = True) -> Path:
    """``folder / name`` when ``name`` is a plain file name (no separator, not ``.``/``..``,
    not absolute) and that entry is a regular file, not a symlink or folder. With
    ``must_exist=False`` a missing entry is accepted (to be written)."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "\0" in name
            or "/" in name or (os.altsep and os.altsep in name) or os.sep in name):
        raise CheckpointError(f"{folder}: member name {name!r} must be a plain file name")
    path = Path(folder) / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if must_exist:
            raise CheckpointError(f"{folder}: {name} is missing") from None
        return path
    except OSError as e:
        raise CheckpointError(f"{folder}: cannot read {name}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(f"{folder}: {name} is a symbolic link; only plain files are read")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{folder}: {name} is not a regular file")
    return path
