"""--overwrite replaces only a file rectflow wrote (listed in a .rectflow-files record), never a
user's file of the same name: found by a newcomer's walk-through (eval --out notes.txt
--overwrite replaced their notes; sample --out mine.npy --overwrite their array)."""
from __future__ import annotations

import pytest

from support import point_cloud, tiny_checkpoint, tree_state


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("owned")
    return tiny_checkpoint(root / "ck", point_cloud(root / "pts.npy"), steps=5)


@pytest.mark.parametrize("name,argv", [
    ("notes.txt", ["eval", "-n", "16", "--seeds", "1", "--no-adaptive"]),
    ("mine.npy", ["sample", "-n", "8"]),
    ("mine.png", ["sample", "-n", "8"]),          # the picture beside mine.npy
    ("mine.labels.npy", ["sample", "-n", "8"]),   # only a conditional sample writes it: kept
])
def test_overwrite_never_replaces_a_users_file(cli, model, tmp_path, monkeypatch, name, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b"the user's own bytes\n")
    out = "notes.txt" if name == "notes.txt" else "mine.npy"
    before = tree_state(tmp_path)
    code, _, err = cli(*argv, "--ckpt", model, "--out", out, "--overwrite")
    if name == "mine.labels.npy":   # not an output of an unconditional sample: untouched
        assert code == 0, err
        assert (tmp_path / name).read_bytes() == b"the user's own bytes\n"
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "rectflow did not write it" in lines[0], lines[0]
    assert tree_state(tmp_path) == before


def test_overwrite_replaces_what_rectflow_wrote(cli, model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("sample", "--ckpt", model, "-n", "8", "--out", "s.npy")
    assert code == 0, err
    first = (tmp_path / "s.npy").read_bytes()
    assert {"s.npy", "s.png"} <= set((tmp_path / ".rectflow-files").read_text().split())
    code, _, err = cli("sample", "--ckpt", model, "-n", "8", "--out", "s.npy")
    assert code == 2 and "already exists" in err
    code, _, err = cli("sample", "--ckpt", model, "-n", "8", "--seed", "1", "--out", "s.npy",
                       "--overwrite")
    assert code == 0, err
    assert (tmp_path / "s.npy").read_bytes() != first
