"""Atomic, pickle-free file IO: the only place rectflow writes or parses its own files.

Every file is written to a temporary name in its folder, fsynced and renamed into place, so a
kill never leaves a half-written file under a final name. Temporary files are created with mode
0o666 through ``os.open``, so the process umask applies without being read or changed (reading
the umask means setting it, a process-wide side effect); they are created exclusively and never
through a symbolic link, and registered as made by this process. Their name carries the token
of the marked folder they are under (else one of this process), which is how a later run knows
a leftover temporary file is rectflow's; a file written under a marked folder is recorded in its
``.rectflow-files`` (:mod:`rectflow.io.remove`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import CheckpointError
from .record import json_object

TEMP_SUFFIX = ".tmp"
_PROCESS_TAG = secrets.token_hex(4)   # temporary names outside a marked folder
_WRITE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                | getattr(os, "O_NOFOLLOW", 0))


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.<tag>-<hex>.tmp``, the tag being the
    first 8 characters of the token of the folder's marker, or this process's own tag."""
    from ..io.remove import marked_root, token_of
    root = marked_root(path)
    token = token_of(root) if root is not None else None
    tag = token[:8] if token else _PROCESS_TAG
    return path.parent / f".{path.name}.{tag}-{secrets.token_hex(6)}{TEMP_SUFFIX}"


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):   # some file systems cannot fsync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ..io.remove import forget, record_written, register, remove_made
    tmp = temp_path(path)
    fd = os.open(tmp, _WRITE_FLAGS, 0o666)
    register(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        record_written(path)      # first: a kill after the rename leaves it recorded
        os.replace(tmp, path)
        forget(tmp)
    except BaseException:
        remove_made(tmp, strict=False)
        raise
    fsync_dir(path.parent)


def append_bytes(path: str | Path, data: bytes) -> None:
    """Append to a log file, never through a link; a file this creates is recorded."""
    from ..io.remove import record_written
    path = Path(path)
    new = not os.path.lexists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                 | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if new:
        record_written(path)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    return json_object(text, str(path))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> str:
    """Write tensors as safetensors atomically; returns the file's sha256."""
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from None


def _header(path: str | Path, read):
    from safetensors import safe_open
    if not Path(path).is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            return read(f)
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from None


def tensor_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header, without loading its tensors."""
    return _header(path, lambda f: dict(f.metadata() or {}))


def tensor_shapes(path: str | Path) -> dict[str, list[int]]:
    """Name -> shape of every tensor of a safetensors file, from its header alone."""
    return _header(path, lambda f: {k: list(f.get_slice(k).get_shape()) for k in f.keys()})


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_npy(path, array: torch.Tensor) -> None:
    """An array as ``.npy`` (never pickled), written atomically."""
    import io

    import numpy as np
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array.detach().cpu().numpy()), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
