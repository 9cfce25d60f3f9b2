"""rectflow.io: no command can lose a user's data.

Real folders in tmp_path; real processes for the lock (a holder waiting on a pipe, a second
process refused, a SIGKILLed holder taken over), for signals, and for crashes at every
filesystem step of a staged replacement. Synchronisation is by lines read from pipes with a
timeout, never by sleeping.
"""
from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import rectflow
from rectflow.errors import (CheckpointError, OutputError, OutputLocked, ResourceError,
                             StageInterrupted, UserError)
from rectflow.io import (MARKER, FolderLock, available_memory, check_fits, check_output,
                         ensure_output, graceful_interrupts, holds_lock, human_bytes, is_owned,
                         lock_path, os_errors, plain_member, read_marker, recover, sibling,
                         staged_output)
from rectflow.io import folders, resources

ROOT = Path(rectflow.__file__).resolve().parent.parent
TIMEOUT = 60


# ---------------------------------------------------------------------------------- helpers
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
    """A finished rectflow run: marker, a file and a nested state folder."""
    with FolderLock(folder):
        ensure_output(folder, kind)
    (folder / "run.txt").write_text(text)
    (folder / "state").mkdir()
    (folder / "state" / "w.bin").write_bytes(os.urandom(64))
    return folder


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".rectflow-" in p.name)


# ---------------------------------------------------------------------------------- markers
def test_marker_marks_ownership_and_kind(tmp_path):
    out = tmp_path / "rf1"
    with FolderLock(out):
        assert ensure_output(out, "model") == out
    marker = read_marker(out)
    assert marker["kind"] == "model" and marker["rectflow"] == rectflow.__version__
    assert marker["created"].endswith("+00:00")
    assert is_owned(out) and is_owned(out, "model") and not is_owned(out, "pairs")
    plain = tmp_path / "mine"
    plain.mkdir()
    assert not is_owned(plain)
    (plain / MARKER).write_text("not json")
    assert not is_owned(plain)
    (plain / MARKER).unlink()
    (plain / MARKER).symlink_to(out / MARKER)          # a borrowed marker does not count
    assert not is_owned(plain)
    link = tmp_path / "link"
    link.symlink_to(out)
    assert not is_owned(link)
    with pytest.raises(ValueError):
        check_output(tmp_path / "x", kind="Model!")


# --------------------------------------------------------------------------------- checking
def test_check_output_accepts_new_and_empty_and_touches_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    before = tree(tmp_path)
    assert check_output(tmp_path / "new" / "rf1", kind="model") == tmp_path / "new" / "rf1"
    assert check_output(tmp_path / "empty", kind="model") == tmp_path / "empty"
    assert tree(tmp_path) == before


def test_check_output_refuses_file_nonempty_and_contradiction(tmp_path):
    (tmp_path / "f.npy").write_bytes(b"x")
    with pytest.raises(OutputError, match="is a file; a folder is wanted"):
        check_output(tmp_path / "f.npy", kind="model", overwrite=True)
    run_owned(tmp_path / "rf1", "old")
    with pytest.raises(OutputError, match="already exists and is not empty; pass overwrite=Tr"):
        check_output(tmp_path / "rf1", kind="model")
    with pytest.raises(OutputError, match="contradict"):
        check_output(tmp_path / "rf1", kind="model", overwrite=True, resume=True)
    assert check_output(tmp_path / "rf1", kind="model", overwrite=True)
    assert check_output(tmp_path / "rf1", kind="model", resume=True)
    (tmp_path / "link").symlink_to(tmp_path / "rf1")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output(tmp_path / "link", kind="model", overwrite=True)


@pytest.mark.parametrize("flag", ["overwrite", "resume"])
def test_replace_or_resume_needs_a_marker_of_the_same_kind(tmp_path, flag):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    with pytest.raises(OutputError, match=r"was not made by rectflow \(no .rectflow marker\)"):
        check_output(mine, kind="model", **{flag: True})
    run_owned(tmp_path / "pairs1", "pairs", kind="pairs")
    with pytest.raises(OutputError, match="holds a rectflow 'pairs' folder, not 'model'"):
        check_output(tmp_path / "pairs1", kind="model", **{flag: True})


@pytest.mark.parametrize("relation", ["is", "contains", "inside", "is-through-symlink"])
def test_check_output_refuses_inputs(tmp_path, relation):
    pairs = run_owned(tmp_path / "runs" / "pairs1", "pairs", kind="pairs")
    out = {"is": pairs, "contains": tmp_path / "runs", "inside": pairs / "rf2",
           "is-through-symlink": tmp_path / "alias"}[relation]
    (tmp_path / "alias").symlink_to(tmp_path / "runs")
    if relation == "is-through-symlink":
        out = tmp_path / "alias" / "pairs1"
    words = {"is": "is the input", "contains": "contains the input", "inside": "lies inside",
             "is-through-symlink": "is the input"}[relation]
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(OutputError, match=words):
            check_output(out, inputs=[pairs], kind="pairs" if relation != "inside" else "model",
                         **flags)
    # an input file inside the output folder counts too
    with pytest.raises(OutputError, match="contains the input"):
        check_output(pairs, inputs=[str(pairs / "run.txt")], kind="pairs", overwrite=True)


def test_check_output_refuses_cwd_home_and_roots(tmp_path, monkeypatch):
    work, home = tmp_path / "work", tmp_path / "home" / "me"
    work.mkdir()
    home.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    for out, words in ((".", "is the current working folder"), (work, "is the current"),
                       (tmp_path, "contains the current working folder"),
                       (home, "is the home folder"), (tmp_path / "home", "contains the home"),
                       ("/", "filesystem root")):
        with pytest.raises(OutputError, match=words):
            check_output(out, kind="run", resume=True)
    mount = tmp_path / "disk"
    mount.mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mount or real_ismount(p))
    with pytest.raises(OutputError, match="mount point"):
        check_output(mount, kind="run")
    assert check_output(work / "runs" / "a", kind="run")   # below them is fine


def test_check_output_refuses_unwritable_parent(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match="notes.txt is a file, not a folder"):
        check_output(tmp_path / "notes.txt" / "deeper" / "rf1", kind="model")


# ------------------------------------------------------------------------- staged replacing
def test_staged_output_replaces_an_owned_run_only_on_success(tmp_path):
    out = run_owned(tmp_path / "rf1", "old")
    old = tree(out)
    with FolderLock(out):
        with pytest.raises(ZeroDivisionError):
            with staged_output(out, "model", overwrite=True) as work:
                assert work.parent == out.parent and work.name.startswith(".rf1.rectflow-")
                (work / "run.txt").write_text("half")
                1 / 0
        assert tree(out) == old and leftovers(tmp_path) == [".rf1.rectflow-lock"]
        with staged_output(out, "model", overwrite=True) as work:
            (work / "run.txt").write_text("new")
            assert (out / "run.txt").read_text() == "old"          # untouched until the end
    assert (out / "run.txt").read_text() == "new" and not (out / "state").exists()
    assert is_owned(out, "model") and leftovers(tmp_path) == []


def test_staged_output_refuses_what_is_not_its_to_replace(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2")
    with pytest.raises(RuntimeError, match="must run under FolderLock"):
        with staged_output(mine, "model", overwrite=True):
            pass
    with FolderLock(mine):
        with pytest.raises(OutputError, match="not made by rectflow"):
            with staged_output(mine, "model", overwrite=True):
                pytest.fail("must not start")
        run_owned(tmp_path / "rf1", "old")
        with FolderLock(tmp_path / "rf1"), pytest.raises(OutputError, match="not empty"):
            with staged_output(tmp_path / "rf1", "model"):
                pytest.fail("must not start")
    assert (mine / "data.csv").read_text() == "1,2"


def test_staged_output_creates_new_and_fills_an_empty_folder(tmp_path, monkeypatch):
    for out in (tmp_path / "a" / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        with FolderLock(out), staged_output(out, "eval") as work:
            (work / "report.json").write_text("{}")
        assert is_owned(out, "eval") and (out / "report.json").exists()
    # where the file system cannot exchange two names, the rename fallback does the same
    out = run_owned(tmp_path / "rf1", "old")

    def no_exchange(a, b):
        raise OSError(errno.EINVAL, "not supported")
    monkeypatch.setattr(folders, "exchange", no_exchange)
    with FolderLock(out), staged_output(out, "model", overwrite=True) as work:
        (work / "run.txt").write_text("new")
    assert (out / "run.txt").read_text() == "new" and leftovers(tmp_path) == []


def test_staged_output_commits_on_a_chosen_exception(tmp_path):
    out = run_owned(tmp_path / "rf1", "old")
    with FolderLock(out), pytest.raises(StageInterrupted):
        with staged_output(out, "model", overwrite=True, commit_on=(StageInterrupted,)) as w:
            (w / "run.txt").write_text("partial, resumable")
            raise StageInterrupted(signal.SIGTERM, step=7)
    assert (out / "run.txt").read_text() == "partial, resumable"


CRASHER = r"""
import os, sys, errno
from pathlib import Path
import rectflow.io.folders as f
from rectflow.io import FolderLock, staged_output
out, k, fallback = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
calls = [0]
def counted(fn):
    def g(*a, **kw):
        calls[0] += 1
        if calls[0] == k:
            os._exit(9)                     # dies here, like SIGKILL: no cleanup runs
        return fn(*a, **kw)
    return g
def no_exchange(a, b):
    raise OSError(errno.ENOSYS, "no renameat2")
with FolderLock(out):
    with staged_output(out, "model", overwrite=True) as tmp:
        (tmp / "run.txt").write_text("new")
        f.exchange = counted(no_exchange if fallback else f.exchange)
        for name in ("rename", "unlink", "rmdir"):
            setattr(os, name, counted(getattr(os, name)))
os._exit(0)
"""


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "renames"])
def test_a_crash_at_any_step_of_the_swap_keeps_old_or_new(tmp_path, fallback):
    """Kill the swap at its k-th filesystem call, for every k: ``out`` holds the old or the
    new run (in the rename fallback, once ``recover`` ran), and no staging folder stays."""
    seen, missing = [], 0
    for k in range(1, 60):
        out = run_owned(tmp_path / f"k{k}" / "rf1", "old")
        proc = spawn(CRASHER, out, k, int(fallback))
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode in (0, 9), err
        if not fallback or proc.returncode == 0:
            assert (out / "run.txt").read_text() in ("old", "new")   # no recovery needed
        missing += not out.exists()
        with FolderLock(out):
            recover(out)
        seen.append((out / "run.txt").read_text())
        assert is_owned(out, "model") and leftovers(out.parent) == []
        assert (out / "state").exists() == (seen[-1] == "old")      # never a mix
        if proc.returncode == 0:
            break
    assert seen[-1] == "new" and seen[0] == "old" and len(seen) >= (6 if fallback else 4)
    assert missing == fallback          # the one instant between two renames, put right
    assert seen == sorted(seen, key=["old", "new"].index)       # old ... old, new ... new


def test_recover_rolls_forward_back_and_leaves_foreign_folders(tmp_path):
    out = tmp_path / "rf1"
    run_owned(sibling(out, "done"), "new")
    run_owned(sibling(out, "old"), "old")
    with FolderLock(out):
        recover(out)                       # killed between the two renames: finish the swap
    assert (out / "run.txt").read_text() == "new" and leftovers(tmp_path) == []
    other = tmp_path / "rf2"
    run_owned(sibling(other, "old"), "old")
    with FolderLock(other):
        recover(other)
    assert (other / "run.txt").read_text() == "old"
    foreign = sibling(tmp_path / "rf3", "new")
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with FolderLock(tmp_path / "rf3"):
        recover(tmp_path / "rf3")
        assert (foreign / "keep.txt").exists()
        with pytest.raises(OutputError, match="in the way"):
            with staged_output(tmp_path / "rf3", "model"):
                pass


def test_ensure_output_new_resume_and_refusals(tmp_path):
    out = tmp_path / "deep" / "pairs1"
    with pytest.raises(RuntimeError, match="FolderLock"):
        ensure_output(out, "pairs")
    with FolderLock(out):
        ensure_output(out, "pairs")
        (out / "pairs-00000.safetensors").write_bytes(b"x")
        with pytest.raises(OutputError, match="not empty"):
            ensure_output(out, "pairs")
        assert ensure_output(out, "pairs", resume=True) == out
        with pytest.raises(OutputError, match="not 'model'"):
            ensure_output(out, "model", resume=True)
    assert (out / "pairs-00000.safetensors").read_bytes() == b"x"


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
try:
    with graceful_interrupts() as stop:
        print("ready", flush=True)
        while time.monotonic() < deadline:      # one training step per pass
            step += 1
            if stop.requested:
                raise StageInterrupted(stop.requested, step, resume="rectflow train --resume")
        sys.exit(99)
except StageInterrupted as e:
    restored = (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
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
    part = tmp_path / "pairs-00003.safetensors"
    part.write_bytes(b"half")
    with pytest.raises(ResourceError) as e:
        with os_errors("write pairs", cleanup=[part, tmp_path / "never-made"]):
            with open("/dev/full", "wb") as f:           # a real ENOSPC
                f.write(b"x" * 10)
                f.flush()
    assert e.value.errno == errno.ENOSPC and not part.exists()
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
    part = tmp_path / "tmpdir"
    part.mkdir()
    with pytest.raises(ResourceError, match="out of memory.*partial output removed"):
        with os_errors("sample", cleanup=[part]):
            raise MemoryError()
    assert not part.exists()
    with pytest.raises(ValueError):
        with os_errors("sample"):
            raise ValueError("a bug keeps its traceback")


# ---------------------------------------------------------------------------- pairs members
def test_plain_member_accepts_only_plain_files(tmp_path):
    (tmp_path / "pairs-00000.safetensors").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "pairs-00000.safetensors")
    assert plain_member(tmp_path, "pairs-00000.safetensors") == \
        tmp_path / "pairs-00000.safetensors"
    for name, words in (("../etc", "plain file name"), ("/etc/passwd", "plain file name"),
                        ("sub/x", "plain file name"), ("..", "plain file name"),
                        ("", "plain file name"), ("link", "symbolic link"),
                        ("sub", "not a regular file"), ("gone", "missing")):
        with pytest.raises(CheckpointError, match=words):
            plain_member(tmp_path, name)
    assert plain_member(tmp_path, "gone", must_exist=False) == tmp_path / "gone"
    with pytest.raises(CheckpointError, match="symbolic link"):
        plain_member(tmp_path, "link", must_exist=False)
