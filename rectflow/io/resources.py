"""Memory estimates checked before a big allocation, and OS errors as one-line messages.

``check_fits(nbytes, "sampling n=1e12", device)`` refuses an estimate larger than the memory
the device has free; ``with os_errors("write pairs", cleanup=[part]):`` turns a full disk, a
quota, a read-only file system, a missing permission or running out of memory into a
:class:`~rectflow.errors.ResourceError` after removing the partial files it was given.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path

from ..errors import ResourceError
from .remove import remove_made

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EMFILE: "too many open files",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EIO: "input/output error (failing disk or network file system)",
}


def human_bytes(n: float) -> str:
    """``7.5e12 -> '7.5 TB'``, ``2e10 -> '20 GB'``, ``512 -> '512 B'`` (decimal units)."""
    n = float(n)
    sign, n = ("-" if n < 0 else ""), abs(n)
    for unit in _UNITS:
        if round(n, 1 if n < 10 else 0) < 1000 or unit == _UNITS[-1]:
            text = f"{n:.1f}".rstrip("0").rstrip(".") if n < 10 else f"{n:.0f}"
            return f"{sign}{text} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _cgroup_free() -> int | None:
    """Memory left under a cgroup v2 limit (containers), or None when unlimited/unknown."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _cpu_free() -> int | None:
    free = None
    with contextlib.suppress(OSError, ValueError, IndexError):   # not Linux: see below
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    if free is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_free()
    return limit if free is None else free if limit is None else min(free, limit)


def available_memory(device=None) -> int | None:
    """Bytes free on ``device`` (None/"cpu": RAM; "cuda[:i]": that GPU), None if unknown."""
    kind = str(getattr(device, "type", device) or "cpu").split(":")[0]
    if kind == "cpu":
        return _cpu_free()
    if kind == "cuda":
        import torch
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    return None


def check_fits(nbytes: int, what: str, device=None, *, headroom: float = 0.9) -> int | None:
    """Raise ResourceError when ``nbytes`` exceeds ``headroom`` of the free memory of
    ``device``; returns the free bytes (None when unknown: then nothing is checked)."""
    free = available_memory(device)
    if free is not None and nbytes > headroom * free:
        where = "" if str(device or "cpu").startswith("cpu") else f" on {device}"
        raise ResourceError(f"{what} needs ~{human_bytes(nbytes)}; {human_bytes(free)} "
                            f"available{where}")
    return free


def _remove(paths) -> list[Path]:
    removed = []
    for p in map(Path, paths):
        with contextlib.suppress(OSError):   # cleanup after a failure must not fail itself
            if remove_made(p, strict=False):   # only what rectflow wrote; never a user's file
                removed.append(p)
    return removed


# what torch's allocators say when an allocation fails on the CPU (a RuntimeError, not
# torch.OutOfMemoryError) or in a kernel's workspace
_OOM_WORDS = ("DefaultCPUAllocator: can't allocate memory", "not enough memory",
              "CUDA out of memory", "out of memory")


def _is_oom(e: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch else None
    if isinstance(e, MemoryError) or (oom is not None and isinstance(e, oom)):
        return True
    return isinstance(e, RuntimeError) and any(w in str(e) for w in _OOM_WORDS)


@contextlib.contextmanager
def os_errors(what: str, cleanup=()):
    """Turn OSError, MemoryError and torch's OutOfMemoryError inside the block into a one-line
    ResourceError ``"<what> failed: <reason> (<file>)"``, removing ``cleanup`` (files or
    folders) first."""
    try:
        yield
    except OSError as e:
        removed = _remove(cleanup)
        reason = _REASONS.get(e.errno, e.strerror or str(e))
        where = f" ({e.filename})" if e.filename else ""
        tail = "; partial output removed" if removed else ""
        raise ResourceError(f"{what} failed: {reason}{where}{tail}", e.errno) from e
    except BaseException as e:
        if not _is_oom(e):
            raise
        removed = _remove(cleanup)
        tail = "; partial output removed" if removed else ""
        raise ResourceError(f"{what} failed: out of memory; use smaller batches or fewer "
                            f"samples{tail}") from e
