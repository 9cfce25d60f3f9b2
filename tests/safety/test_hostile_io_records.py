"""Hostile bookkeeping files (issue 24): a folder's marker ``.rectflow``, its record of written
files ``.rectflow-files`` and the lock file beside it are typed records; one that rectflow did
not write (garbage, a wrong type, a path leaving the folder, a folder in its place) is refused
with one line naming it and exit 2 before anything is written, whether the run is resumed or
replaced. A garbled line of ``metrics.jsonl`` is dropped on resume like a torn one, never a
traceback.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import point_cloud, refused, tiny_checkpoint, variant

TOKEN_HOLDER = {"pid": 1, "host": "h", "since": "2026-01-01T00:00:00+00:00", "command": "c"}


def _write(name: str, data: bytes):
    return lambda d: (d / name).write_bytes(data)


def _append(name: str, data: bytes):
    return lambda d: (d / name).write_bytes((d / name).read_bytes() + data)


def _folder(name: str):
    return lambda d: ((d / name).unlink(), (d / name).mkdir())


def _lock(data: bytes):
    return lambda d: (d.parent / f".{d.name}.rectflow-lock").write_bytes(data)


# (variant, how to spoil the copy of a finished run, a word the one line must hold)
SPOILED = [
    ("marker_garbage", _write(".rectflow", b"\x00\xffgarbage{"), ".rectflow"),
    ("marker_list", _write(".rectflow", b"[1, 2]\n"), ".rectflow"),
    ("marker_token_type", _write(".rectflow", b'{"kind": "model", "token": 5}\n'), "token"),
    ("marker_token_short", _write(".rectflow", b'{"kind": "model", "token": "abc"}\n'), "token"),
    ("marker_folder", _folder(".rectflow"), ".rectflow"),
    ("files_garbage", _write(".rectflow-files", b"\xff\xfe\n"), ".rectflow-files"),
    ("files_escape", _append(".rectflow-files", b"../../elsewhere.txt\n"), ".rectflow-files"),
    ("files_absolute", _append(".rectflow-files", b"/etc/passwd\n"), ".rectflow-files"),
    ("files_folder", _folder(".rectflow-files"), ".rectflow-files"),
    ("lock_garbage", _lock(b"\x00garbage"), "rectflow-lock"),
    ("lock_pid_type", _lock(json.dumps({**TOKEN_HOLDER, "pid": "1"}).encode()), "rectflow-lock"),
    ("lock_extra_key", _lock(json.dumps({**TOKEN_HOLDER, "x": 1}).encode()), "rectflow-lock"),
]
HOW = {"resume": ["train", "--resume", "--train-steps", "10", "--no-eval", "--out"],
       "overwrite": ["train", "--data", "pts.npy", "--overwrite", "--train-steps", "5",
                     "--hidden", "32", "--depth", "2", "--no-eval", "--out"]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("hostile_io")
    point_cloud(r / "pts.npy")
    ck = tiny_checkpoint(r / "ck", r / "pts.npy", steps=5)
    for name, spoil, _ in SPOILED:
        spoil(variant(ck, r / name))
    return r


@pytest.mark.parametrize("how", sorted(HOW))
@pytest.mark.parametrize("name,spoil,word", SPOILED, ids=[s[0] for s in SPOILED])
def test_a_spoiled_bookkeeping_file_is_one_line_exit_2_and_touches_nothing(
        cli, root, monkeypatch, how, name, spoil, word):
    assert name in refused(cli, root, monkeypatch, HOW[how] + [name], word)


def test_a_garbled_metrics_line_is_dropped_on_resume(cli, root, monkeypatch):
    run = variant(root / "ck", root.parent / "metrics_garbled")
    log = run / "metrics.jsonl"
    first = log.read_bytes()
    log.write_bytes(first + b"\xff{torn\n" + b'{"step": "7"}\n')
    monkeypatch.chdir(root)
    code, _, err = cli("train", "--resume", "--train-steps", "10", "--no-eval", "--out", run)
    assert code == 0 and "Traceback" not in err, err
    text = log.read_bytes()
    assert text.startswith(first) and b"\xff" not in text and b'"7"' not in text
    steps = [json.loads(x)["step"] for x in text.decode().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 10, steps
