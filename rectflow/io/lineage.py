"""What an input names: the folders and data a model or pairs folder was made from.

A stage's inputs are transitive. A pairs folder names its teacher (``manifest.json``); a model
folder names its pairs, its init and its teacher (``config.json`` ``parent``, paths relative to
the folder); both name the data they were made from and the data source (``data``, ``source``
specs: ``path`` or ``root``). Writing an output that is, contains or lies inside any of them
could replace or pollute something an input depends on, so ``check_output`` refuses it.

Only the fields that name something are read here (:class:`Named`, the part of a card or a
manifest this floor below :mod:`rectflow.records` needs), from regular files only, never
through a link, bounded in size; a missing or unreadable record names nothing, nor does a
field of another type.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .record import JsonLine

_RECORDS = ("manifest.json", "config.json")
_PARENTS = ("pairs", "init", "teacher")
_MAX_RECORD = 1 << 22
_MAX_NAMED = 256


@dataclass(frozen=True)
class Named(JsonLine):
    """What a model folder's ``config.json`` or a pairs folder's ``manifest.json`` names (the
    rest of the record is :class:`rectflow.records.RunCard` / ``PairsManifest``)."""
    LENIENT = True   # a field of another type names nothing; lineage guards inputs: read all

    teacher: dict | None = None    # manifest: {"path" (relative to the folder), ...}
    parent: dict | None = None     # card: {"pairs", "init", "teacher"} (relative paths)
    data: dict | None = None       # a data spec: "path" or "root"
    source: dict | None = None     # {"data": the source's data spec}

    def links(self) -> list[tuple[str, str]]:
        """(role, path relative to the folder) of the folders this record names."""
        found = [("teacher", self.teacher.get("path"))] if self.teacher else []
        found += [(k, self.parent.get(k)) for k in _PARENTS] if self.parent else []
        return [(role, rel) for role, rel in found if isinstance(rel, str) and rel]

    def data_specs(self) -> list[tuple[dict | None, str]]:
        return [(self.data, "its data"),
                ((self.source or {}).get("data"), "its data source")]


def _record(folder: Path, name: str) -> Named:
    path = folder / name
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_RECORD:
            return Named()
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            text = f.read(_MAX_RECORD)
    except OSError:
        return Named()
    return Named.maybe(text, str(path)) or Named()


def _data_paths(spec) -> list[str]:
    if not isinstance(spec, dict):
        return []
    return [v for v in (spec.get("path"), spec.get("root")) if isinstance(v, str) and v]


def _named(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, role, is data) for what one folder's records name directly."""
    found = []
    for name in _RECORDS:
        rec = _record(folder, name)
        found += [(Path(os.path.normpath(folder / rel)), f"its {role}", False)
                  for role, rel in rec.links()]
        for spec, role in rec.data_specs():
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
