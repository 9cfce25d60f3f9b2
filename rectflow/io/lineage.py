"""What an input names: the folders and data a model or pairs folder was made from.

A stage's inputs are transitive. A pairs folder names its teacher (``manifest.json``); a model
folder names its pairs, its init and its teacher (``config.json`` ``parent``, paths relative to
the folder); both name the data they were made from and the data source (``data``, ``source``
specs: ``path`` or ``root``). Writing an output that is, contains or lies inside any of them
could replace or pollute something an input depends on, so ``check_output`` refuses it.

The records are read here as plain JSON (regular files only, never through a link, bounded in
size); a missing or unreadable record names nothing.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

_RECORDS = ("manifest.json", "config.json")
_PARENTS = ("pairs", "init", "teacher")
_MAX_RECORD = 1 << 22
_MAX_NAMED = 256


def _record(folder: Path, name: str) -> dict:
    path = folder / name
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_RECORD:
            return {}
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(_MAX_RECORD).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _data_paths(spec) -> list[str]:
    if not isinstance(spec, dict):
        return []
    return [v for v in (spec.get("path"), spec.get("root")) if isinstance(v, str) and v]


def _named(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, role, is data) for what one folder's records name directly."""
    found = []
    for name in _RECORDS:
        rec = _record(folder, name)
        teacher, parent = rec.get("teacher"), rec.get("parent")
        links = [("teacher", teacher.get("path"))] if isinstance(teacher, dict) else []
        if isinstance(parent, dict):
            links += [(k, parent.get(k)) for k in _PARENTS]
        for role, rel in links:
            if isinstance(rel, str) and rel:
                found.append((Path(os.path.normpath(folder / rel)), f"its {role}", False))
        source = rec.get("source")
        for spec, role in ((rec.get("data"), "its data"),
                           (source.get("data") if isinstance(source, dict) else None,
                            "its data source")):
            found += [(Path(p), role, True) for p in _data_paths(spec)]
    return found


def named_inputs(path: str | Path) -> list[tuple[Path, str, bool]]:
    """Everything ``path`` names, transitively (``path`` itself excluded): ``(path, how it is
    named, is data)``, e.g. ``(rf1, "its teacher, named by pairs1", False)``."""
    start = Path(path)
    seen = {os.path.realpath(start)}
    todo, found = [start], []
    while todo and len(found) < _MAX_NAMED:
        folder = todo.pop()
        if not os.path.isdir(folder):
            continue
        for named, role, data in _named(folder):
            real = os.path.realpath(named)
            if real in seen:
                continue
            seen.add(real)
            found.append((named, role if folder == start else f"{role}, named by {folder}",
                          data))
            if not data:
                todo.append(named)
    return found
