"""Typed JSON: the one place rectflow turns its own JSON into checked fields and back.

:class:`Fields` is what every record shares, whatever file holds it: a dataclass whose values
are checked against its annotations (:func:`check_types`: ``int``, ``float``, ``str``,
``bool``, ``dict``, ``list[X]``, ``X | None`` and nested dataclasses), so a hand-edited file
fails with one line naming the file and the field, never later with a traceback.
:class:`rectflow.records.base.Record` adds a format, a version and a file of its own on top.

:class:`JsonLine` is a record that is one JSON object on one line, without format or version,
because its bytes were fixed before records carried them: a folder's ownership marker, a lock
file's holder, a line of ``metrics.jsonl``, the rectflow header of a weights file. It lives here,
below :mod:`rectflow.io.remove` and :mod:`rectflow.io.lock`, which read and write such lines
themselves (never through a link, bounded in size), so it imports no file IO.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:   # typing.Self is Python 3.11+; rectflow runs on 3.10
    from typing_extensions import Self

from ..errors import CheckpointError

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


class Fields:
    """A dataclass read from parsed JSON, every field checked (see the module)."""
    FILENAME: ClassVar[str] = "record"   # what an error names when no file is given

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict, version: int) -> Self:
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        missing = [f.name for f in fields if f.name not in d and f.init
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"field {missing[0]!r} is missing")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def parse(cls, body: dict, version: int | None = None, where: str = "") -> Self:
        """A record from the parsed JSON ``body``, its field types and values checked; any
        problem is one CheckpointError naming ``where`` (the file) and the field."""
        where = where or cls.FILENAME
        try:
            rec = cls.from_json(dict(body), version or getattr(cls, "VERSION", 1))
            check_types(rec)
            rec.check()
        except ValueError as e:
            raise CheckpointError(f"{where} is malformed: {e}") from None
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as e:
            raise CheckpointError(f"{where} is malformed ({type(e).__name__}: {e})") from None
        return rec

    def check(self) -> None:
        """Validate field values after reading (raise ValueError/TypeError on a bad one)."""


def json_object(text: str | bytes, where: str) -> dict:
    """The JSON object ``text`` holds (bytes as UTF-8); one CheckpointError naming ``where``
    for anything else."""
    try:
        obj = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where} should hold a JSON object")
    return obj


class JsonLine(Fields):
    """A record written as one JSON object on one line, without format or version; a field
    that is None is left out (and reads back as None, its default)."""
    EXACT: ClassVar[bool] = False     # a key the record does not know makes it malformed
    LENIENT: ClassVar[bool] = False   # a value that does not fit its field is left out

    def to_json(self) -> dict:
        return {k: v for k, v in super().to_json().items() if v is not None}

    def text(self) -> str:
        return json.dumps(self.to_json())

    def line(self) -> bytes:
        return (self.text() + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, d: dict, version: int) -> Self:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if cls.EXACT and unknown:
            raise ValueError(f"field {unknown[0]!r} is not one of this record's")
        if cls.LENIENT:
            hints = typing.get_type_hints(cls)
            d = {k: v for k, v in d.items() if k in hints and type_problem(v, hints[k]) is None}
        return super().from_json(d, version)

    @classmethod
    def from_text(cls, text: str | bytes, where: str = "") -> Self:
        """The record one line (or a whole small file) holds; CheckpointError naming
        ``where`` and the field when it is not one."""
        where = where or cls.FILENAME
        return cls.parse(json_object(text, where), where=where)

    @classmethod
    def maybe(cls, text: str | bytes, where: str = "") -> Self | None:
        """:meth:`from_text`, or None for anything that is not such a record (a torn line, a
        file someone else wrote)."""
        try:
            return cls.from_text(text, where)
        except CheckpointError:
            return None
