"""What every record on disk shares: a format name, a version, one reader and one writer.

A record is a dataclass; :meth:`Record.read` is the only way rectflow parses one of its own
JSON files. It refuses a file of another format, and a version newer than this rectflow knows
("written by a newer rectflow"), each with one line. Older versions are upgraded in
``from_json``. Every field's value is then checked against the field's annotation
(:func:`check_types`: ``int``, ``float``, ``str``, ``bool``, ``dict``, ``list[X]``, ``X | None``
and nested dataclasses), so a hand-edited file fails with one line naming the file and the
field, never later with a traceback. Records of files rectflow wrote before they carried a
format (``UNVERSIONED_OK``) read such a file as version 1.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import CheckpointError
from ..io.files import atomic_write_json, read_json

R = TypeVar("R", bound="Record")

_WORDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
          dict: "an object", list: "a list"}


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" \
            if args else "a list"
    if origin is dict:
        return "an object"
    if dataclasses.is_dataclass(hint):
        return f"a {hint.__name__} object"
    return _WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def type_problem(value, hint) -> str | None:
    """Why ``value`` (parsed JSON) does not fit the annotation ``hint``; None when it does.
    Numbers must be finite; a whole number fits ``float``; ``bool`` fits only ``bool``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        if any(type_problem(value, a) is None for a in args):
            return None
        return f"must be {_describe(hint)}, got {_show(value)}"
    if hint is type(None):
        return None if value is None else f"must be null, got {_show(value)}"
    if origin is list or hint is list:
        if not isinstance(value, list):
            return f"must be {_describe(hint)}, got {_show(value)}"
        for i, v in enumerate(value if args else ()):
            why = type_problem(v, args[0])
            if why:
                return f"[{i}] {why}"
        return None
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return f"must be an object, got {_show(value)}"
        for k, v in (value.items() if args else ()):
            why = type_problem(v, args[1])
            if why:
                return f"[{k!r}] {why}"
        return None
    if dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else f"must be {_describe(hint)}, got {_show(value)}"
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    else:
        ok = isinstance(value, hint)
    return None if ok else f"must be {_describe(hint)}, got {_show(value)}"


def _show(value) -> str:
    text = repr(value)
    return (text[:40] + "...") if len(text) > 43 else text


def check_types(record) -> None:
    """Check every field of the dataclass ``record`` against its annotation (ValueError
    naming the first field that does not fit)."""
    hints = typing.get_type_hints(type(record))
    for f in dataclasses.fields(record):
        why = type_problem(getattr(record, f.name), hints[f.name])
        if why:
            raise ValueError(f"field {f.name!r} {why}")


class Record:
    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    FILENAME: ClassVar[str]
    UNVERSIONED_OK: ClassVar[bool] = False   # a file without format/version is version 1

    # ------------------------------------------------------------------ JSON <-> record
    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: type[R], d: dict, version: int) -> R:
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        missing = [f.name for f in fields if f.name not in d and f.init
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"field {missing[0]!r} is missing")
        return cls(**{k: v for k, v in d.items() if k in names})

    # ------------------------------------------------------------------------ files
    @classmethod
    def path_in(cls, folder: str | Path) -> Path:
        return Path(folder) / cls.FILENAME

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        """Read ``path`` (a file, or a folder holding ``FILENAME``)."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILENAME
        d = read_json(path)
        if cls.UNVERSIONED_OK and "format" not in d and "version" not in d:
            d = {**d, "format": cls.FORMAT, "version": 1}
        fmt, version = d.get("format"), d.get("version")
        if fmt != cls.FORMAT:
            raise CheckpointError(f"{path} is not a {cls.FORMAT} file (format {fmt!r})")
        if not isinstance(version, int) or version < 1:
            raise CheckpointError(f"{path} has no valid format version")
        if version > cls.VERSION:
            raise CheckpointError(f"{path} was written by a newer rectflow ({cls.FORMAT} "
                                  f"version {version}; this one reads up to {cls.VERSION})")
        body = {k: v for k, v in d.items() if k not in ("format", "version")}
        return cls.parse(body, version, where=str(path))

    @classmethod
    def parse(cls: type[R], body: dict, version: int | None = None, where: str = "") -> R:
        """A record from the parsed JSON ``body``, its field types and values checked; any
        problem is one CheckpointError naming ``where`` (the file) and the field."""
        where = where or cls.FILENAME
        try:
            rec = cls.from_json(dict(body), version or cls.VERSION)
            check_types(rec)
            rec.check()
        except ValueError as e:
            raise CheckpointError(f"{where} is malformed: {e}") from None
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as e:
            raise CheckpointError(f"{where} is malformed ({type(e).__name__}: {e})") from None
        return rec

    def check(self) -> None:
        """Validate field values after reading (raise ValueError/TypeError on a bad one)."""

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / self.FILENAME
        atomic_write_json(path, {"format": self.FORMAT, "version": self.VERSION,
                                 **self.to_json()})
        return path


def record_in_folder(folder: Path, kind: str, filename: str, missing: str = "") -> Path:
    """``folder/filename`` of a rectflow folder of ``kind`` ('model', 'pairs'), or one line
    saying why it is not one: absent, a file, or without its record (``missing`` adds why)."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a {kind} folder" if folder.exists()
                              else f"{kind} folder {folder} does not exist")
    if not (folder / filename).is_file():
        raise CheckpointError(f"{folder} has no {filename}{missing}")
    return folder / filename
