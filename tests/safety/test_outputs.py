"""rectflow.io folders: no command can lose a user's data.

Real folders in tmp_path: ownership markers, the checks made before anything is written, staged
replacement (with a real process killed at every filesystem step of the swap), recovery, and
the names read from a pairs folder. Locks, signals, memory and OS errors: test_outputs_guards.
"""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

import rectflow
from outputs_support import TIMEOUT, leftovers, run_owned, spawn, tree
from rectflow.errors import CheckpointError, OutputError, StageInterrupted
from rectflow.io import (MARKER, FolderLock, check_output, ensure_output, folders, is_owned,
                         plain_member, read_marker, recover, sibling, staged_output)


# ---------------------------------------------------------------------------------- markers
def test_marker_marks_ownership_and_kind(tmp_path):
    out = tmp_path / "rf1"
    with FolderLock(out):
        assert ensure_output(out, "model") == out
    marker = read_marker(out)
    assert marker.kind == "model" and marker.rectflow == rectflow.__version__
    assert marker.created.endswith("+00:00")
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
    with pytest.raises(OutputError, match="already exists and is not empty; pass overwrite to"):
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
from rectflow.records import atomic_write_bytes
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
        atomic_write_bytes(tmp / "run.txt", b"new")     # as a stage writes: recorded
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
