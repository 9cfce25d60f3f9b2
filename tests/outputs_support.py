"""Helpers of the rectflow.io tests: child processes synchronised by lines on a pipe (never by
sleeping), and small finished runs to replace."""
from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path

import pytest

import rectflow
from rectflow.io import FolderLock, ensure_output
from rectflow.records import atomic_write_bytes

ROOT = Path(rectflow.__file__).resolve().parent.parent
TIMEOUT = 60


def spawn(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_line(proc: subprocess.Popen, expect: str, timeout: float = TIMEOUT) -> str:
    """Read the child's stdout until a line starting with ``expect`` (or fail after timeout)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            if not sel.select(timeout):
                proc.kill()
                pytest.fail(f"no {expect!r} from the child within {timeout} s")
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"child ended before {expect!r}: {proc.wait()} {proc.stderr.read()}")
            if line.startswith(expect):
                return line.strip()
    finally:
        sel.close()


def run_owned(folder: Path, text: str, kind: str = "model") -> Path:
    """A finished rectflow run: marker, a file and a nested state folder, written as rectflow
    writes them (so its record lists them)."""
    with FolderLock(folder):
        ensure_output(folder, kind)
    atomic_write_bytes(folder / "run.txt", text.encode())       # recorded as rectflow's
    atomic_write_bytes(folder / "state" / "w.bin", os.urandom(64))
    return folder


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".rectflow-" in p.name)
