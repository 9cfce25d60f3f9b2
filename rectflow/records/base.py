"""What every record on disk shares: a format name, a version, one reader and one writer.

A record is a dataclass; :meth:`Record.read` is the only way rectflow parses one of its own
JSON files. It refuses a file of another format, and a version newer than this rectflow knows
("written by a newer rectflow"), each with one line. Older versions are upgraded in
``from_json``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, TypeVar

from ..errors import CheckpointError
from ..io.files import atomic_write_json, read_json

R = TypeVar("R", bound="Record")


class Record:
    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    FILENAME: ClassVar[str]

    # ------------------------------------------------------------------ JSON <-> record
    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: type[R], d: dict, version: int) -> R:
        names = {f.name for f in dataclasses.fields(cls)}
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
        fmt, version = d.get("format"), d.get("version")
        if fmt != cls.FORMAT:
            raise CheckpointError(f"{path} is not a {cls.FORMAT} file (format {fmt!r})")
        if not isinstance(version, int) or version < 1:
            raise CheckpointError(f"{path} has no valid format version")
        if version > cls.VERSION:
            raise CheckpointError(f"{path} was written by a newer rectflow ({cls.FORMAT} "
                                  f"version {version}; this one reads up to {cls.VERSION})")
        body = {k: v for k, v in d.items() if k not in ("format", "version")}
        try:
            rec = cls.from_json(body, version)
            rec.check()
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path} is malformed ({type(e).__name__}: {e})") from None
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
