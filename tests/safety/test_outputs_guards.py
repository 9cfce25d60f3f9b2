"""rectflow.io guards: one writer per output folder, signals, memory estimates, OS errors.

Real processes: a lock holder waiting on a pipe and a second process refused, a SIGKILLed
holder taken over, loops stopped by SIGTERM / SIGINT. Synchronised by lines read from pipes with
a timeout, never by sleeping.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from outputs_support import TIMEOUT, spawn, wait_line
from rectflow.errors import OutputLocked, ResourceError, StageInterrupted, UserError
from rectflow.io import (FolderLock, available_memory, check_fits, graceful_interrupts,
                         holds_lock, human_bytes, lock_path, os_errors, resources)


# ------------------------------------------------------------------------------------- lock
HOLDER = r"""
import sys
from rectflow.io import FolderLock
with FolderLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""
TAKER = r"""
import sys
from rectflow.errors import OutputLocked
from rectflow.io import FolderLock
try:
    with FolderLock(sys.argv[1]):
        print("took it", flush=True)
except OutputLocked as e:
    print(e, flush=True)
    sys.exit(2)
"""


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "rf1"
    holder = spawn(HOLDER, out, "--epochs", 3)
    try:
        wait_line(holder, "locked")
        info = json.loads(lock_path(out).read_text())
        assert info["pid"] == holder.pid and lock_path(out).parent == tmp_path
        taker = spawn(TAKER, out)
        text, _ = taker.communicate(timeout=TIMEOUT)
        assert taker.returncode == 2
        assert f"pid {holder.pid} on {socket.gethostname()}, since {info['since']}" in text
        assert "--epochs 3" in text and "\n" not in text.strip()
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}"):
            with FolderLock(out):
                pass
        holder.stdin.write("\n")
        holder.stdin.flush()
        wait_line(holder, "released")
    finally:
        holder.kill()
        holder.wait()
    assert not lock_path(out).exists()
    taker = spawn(TAKER, out)
    assert taker.communicate(timeout=TIMEOUT)[0].strip() == "took it"


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    out = tmp_path / "rf1"
    holder = spawn(HOLDER, out)
    wait_line(holder, "locked")
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=TIMEOUT) == -signal.SIGKILL
    assert json.loads(lock_path(out).read_text())["pid"] == holder.pid    # stale file stays
    with FolderLock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()


def test_a_lock_file_removed_under_the_taker_is_not_trusted(tmp_path, monkeypatch):
    """The holder removes its file on release; a taker that opened the old file just before
    must notice and lock the new one, or two processes could both think they hold it."""
    from rectflow.io import lock
    out, real_open, opened = tmp_path / "rf1", os.open, []

    def open_then_lose_it(path, *args):
        fd = real_open(path, *args)
        if not opened:
            os.unlink(path)            # the holder released and removed it in between
        opened.append(fd)
        return fd
    monkeypatch.setattr(lock.os, "open", open_then_lose_it)
    with FolderLock(out):
        monkeypatch.undo()
        assert len(opened) == 2 and lock_path(out).exists()
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
        taker = spawn(TAKER, out)
        assert taker.communicate(timeout=TIMEOUT)[1] == "" and taker.returncode == 2


def test_lock_is_reentrant_and_only_the_main_rank_takes_it(tmp_path):
    out = tmp_path / "rf1"
    with FolderLock(out, is_main=False):
        assert not holds_lock(out) and not lock_path(out).exists()
    with FolderLock(out):
        with FolderLock(tmp_path / "." / "rf1"):
            assert holds_lock(out)
        assert holds_lock(out) and lock_path(out).exists()
        with FolderLock(out, is_main=False):      # another rank of the same run: no conflict
            pass
    assert not holds_lock(out) and not lock_path(out).exists()


# ------------------------------------------------------------------------------- interrupts
TRAINER = r"""
import signal, sys, time
from rectflow.errors import StageInterrupted
from rectflow.io import graceful_interrupts
step, deadline = 0, time.monotonic() + 60
# what was installed before (a shell's background job starts with SIGINT ignored, not Python's
# default_int_handler): the handlers must come back to exactly these
before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
try:
    with graceful_interrupts() as stop:
        print("ready", flush=True)
        while time.monotonic() < deadline:      # one training step per pass
            step += 1
            if stop.requested:
                raise StageInterrupted(stop.requested, step, resume="rectflow train --resume")
        sys.exit(99)
except StageInterrupted as e:
    restored = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    print(f"caught {e.signum} restored={restored} step={e.step}: {e}", flush=True)
    sys.exit(e.exit_code)
"""
STUCK = r"""
import sys, time
from rectflow.errors import StageInterrupted
from rectflow.io import graceful_interrupts
deadline = time.monotonic() + 60
try:
    with graceful_interrupts() as stop:
        print("ready", flush=True)
        while stop.requested is None and time.monotonic() < deadline:
            pass
        print("flagged", flush=True)
        while time.monotonic() < deadline:       # stuck: never checks again
            pass
except StageInterrupted as e:
    print(f"stopped {e.signum}", flush=True)
    sys.exit(e.exit_code)
sys.exit(99)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_stops_the_loop_at_a_step_boundary(sig):
    proc = spawn(TRAINER)
    wait_line(proc, "ready")
    proc.send_signal(sig)
    line = wait_line(proc, "caught")
    assert proc.wait(timeout=TIMEOUT) == 128 + sig
    assert line.startswith(f"caught {int(sig)} restored=True step=")
    assert int(line.split("step=")[1].split(":")[0]) >= 1
    assert f"interrupted by {sig.name} at step" in line and "resume with: rectflow" in line


def test_a_second_signal_stops_a_stuck_loop_at_once():
    proc = spawn(STUCK)
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGINT)
    wait_line(proc, "flagged")
    proc.send_signal(signal.SIGINT)
    assert wait_line(proc, "stopped") == f"stopped {int(signal.SIGINT)}"
    assert proc.wait(timeout=TIMEOUT) == 130


def test_an_unchecked_request_is_raised_when_the_block_ends():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StageInterrupted, match="SIGTERM") as e:
        with graceful_interrupts() as stop:
            signal.raise_signal(signal.SIGTERM)
            assert stop.requested == signal.SIGTERM
    assert e.value.exit_code == 143 and not isinstance(e.value, UserError)
    assert signal.getsignal(signal.SIGTERM) is before
    with graceful_interrupts() as stop:          # checked and handled: not raised again
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(StageInterrupted):
            stop.check()


def test_outside_the_main_thread_no_handler_is_installed():
    seen = {}

    def body():
        with graceful_interrupts() as stop:
            seen["active"] = stop.active
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            stop.check()
    t = threading.Thread(target=body)
    t.start()
    t.join(TIMEOUT)
    assert seen == {"active": False, "handler": signal.getsignal(signal.SIGTERM)}


# ---------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("n, text", [(0, "0 B"), (512, "512 B"), (999.7, "1 kB"),
                                     (1234, "1.2 kB"), (2e10, "20 GB"), (7.5e12, "7.5 TB"),
                                     (9.96e6, "10 MB"), (123_456_789, "123 MB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_check_fits_names_the_estimate_and_what_is_free(monkeypatch):
    free = available_memory("cpu")
    meminfo = Path("/proc/meminfo").read_text()
    total = int(next(x for x in meminfo.splitlines() if x.startswith("MemTotal")).split()[1])
    assert 0 < free <= total * 1024
    assert check_fits(1024, "a batch", "cpu") == free
    monkeypatch.setattr(resources, "_cpu_free", lambda: 20 * 10**9)
    with pytest.raises(ResourceError) as e:
        check_fits(int(7.5e12), "sampling n=1e12", "cpu")
    assert str(e.value) == "sampling n=1e12 needs ~7.5 TB; 20 GB available"
    monkeypatch.undo()
    monkeypatch.setattr(resources, "_cgroup_free", lambda: 10**9)
    assert available_memory() <= 10**9                     # a container limit is respected
    assert available_memory("meta") is None and check_fits(10**30, "x", "meta") is None


# ----------------------------------------------------------------------------- OS errors
def test_os_errors_disk_full_removes_partial_files(tmp_path):
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / ".rectflow").write_text('{"kind": "pairs"}')   # rectflow's folder
    part = tmp_path / "pairs" / "pairs-00003.safetensors"
    part.write_bytes(b"half")
    from rectflow.io.remove import register
    register(part)                  # this process made it
    users = tmp_path / "mine.txt"   # named by mistake: cleanup never deletes a user's file
    users.write_text("keep")
    with pytest.raises(ResourceError) as e:
        with os_errors("write pairs", cleanup=[part, users, tmp_path / "never-made"]):
            with open("/dev/full", "wb") as f:           # a real ENOSPC
                f.write(b"x" * 10)
                f.flush()
    assert e.value.errno == errno.ENOSPC and not part.exists() and users.read_text() == "keep"
    assert str(e.value) == "write pairs failed: no space left on the device; partial output " \
                           "removed"


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EDQUOT, "quota"),
                                         (errno.EACCES, "permission denied")])
def test_os_errors_names_the_reason_and_file(tmp_path, code, words):
    with pytest.raises(ResourceError, match=f"save model failed: .*{words}.* \\(/x/m\\)$"):
        with os_errors("save model"):
            raise OSError(code, os.strerror(code), "/x/m")
    with pytest.raises(ResourceError, match="no such file or folder"):
        with os_errors("read data"):
            open(tmp_path / "missing.npy", "rb")


def test_os_errors_out_of_memory_and_other_errors(tmp_path):
    part = tmp_path / ".run.rectflow-new"   # a staging folder rectflow made
    part.mkdir()
    with pytest.raises(ResourceError, match="out of memory.*partial output removed"):
        with os_errors("sample", cleanup=[part]):
            raise MemoryError()
    assert not part.exists()
    with pytest.raises(ValueError):
        with os_errors("sample"):
            raise ValueError("a bug keeps its traceback")


def test_deletion_passes_one_guard_that_refuses_what_rectflow_did_not_make(tmp_path):
    from rectflow.errors import OutputError
    from rectflow.io.folders import make_folder
    from rectflow.io.remove import SNAPSHOT, register, remove_made, token_of
    mine = tmp_path / "notes.txt"
    mine.write_text("a user's file")
    with pytest.raises(OutputError, match="did not make"):
        remove_made(mine)
    assert not remove_made(mine, strict=False) and mine.read_text() == "a user's file"
    run = make_folder(tmp_path / "run", "model")
    users = [run / ".x.safetensors.0a1b.tmp", run / "anything", run / "state" / "step-00000003"]
    users[2].mkdir(parents=True)
    (users[2] / "meta.json").write_text("{}")          # named like a snapshot, but not one
    for p in users[:2]:
        p.write_text("x")
    own = run / f".x.safetensors.{token_of(run)[:8]}-0a1b.tmp"   # a killed run's temp file
    own.write_bytes(b"partial")
    snap = make_folder(run / "state" / "step-00000004", SNAPSHOT, run=token_of(run))
    (snap / "meta.json").write_text("{}")
    made = tmp_path / "made.bin"
    made.write_bytes(b"x")
    register(made)
    for p in users:
        with pytest.raises(OutputError, match="did not make"):
            remove_made(p)
    assert remove_made(own) and remove_made(snap) and remove_made(made)
    assert not own.exists() and not snap.exists() and all(p.exists() for p in users)


def test_a_whole_folder_is_removed_only_when_rectflow_marked_or_named_it(tmp_path):
    import pytest
    from rectflow.errors import OutputError
    from rectflow.io.remove import MARKER, remove_marked_folder
    mine = tmp_path / "run"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "w.bin").write_bytes(b"x")
    (mine / MARKER).write_text('{"kind": "run"}')
    assert remove_marked_folder(mine) and not mine.exists()
    users = tmp_path / "photos"
    users.mkdir()
    (users / "a.png").write_bytes(b"p")
    with pytest.raises(OutputError, match="did not make it"):
        remove_marked_folder(users)
    assert (users / "a.png").read_bytes() == b"p"
