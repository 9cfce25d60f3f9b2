"""What every record on disk shares: a format name, a version, one reader and one writer.

A record is a dataclass; :meth:`Record.read` is the only way rectflow parses one of its own
JSON files. It refuses a file of another format, and a version newer than this rectflow knows
("written by a newer rectflow"), each with one line. Older versions are upgraded in
``from_json``. Every field's value is then checked against the field's annotation
(:func:`check_types`: ``int``, ``float``, ``str``, ``bool``, ``dict``, ``list[X]``, ``X | None``
and nested dataclasses), so a hand-edited file fails with one line naming the file and the
field, never later with a traceback. Those checks live in :mod:`rectflow.io.record` (re-exported
here), below :mod:`rectflow.io`, whose own one-line records (marker, lock holder) use them too. Records of files rectflow wrote before they carried a
format (``UNVERSIONED_OK``) read such a file as version 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

from ..errors import CheckpointError
from ..io.files import atomic_write_json, read_json
from ..io.record import Fields, check_types, type_problem

__all__ = ["Record", "check_types", "record_in_folder", "type_problem"]

R = TypeVar("R", bound="Record")


class Record(Fields):
    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    FILENAME: ClassVar[str]
    UNVERSIONED_OK: ClassVar[bool] = False   # a file without format/version is version 1

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
