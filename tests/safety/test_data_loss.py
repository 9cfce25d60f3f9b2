"""Data must never be lost: hostile layouts around and inside rectflow's folders, via the CLI.

Each case builds a copy of one small trained model (``rf1``), its pairs (``P``), a reflow of
them (``rf2``) and a conditional model, plants a hostile file or link, runs one command and
checks it was refused (exit 2, one line on stderr, no traceback) with every file that existed
before byte-identical. Classes: links are never written or deleted through (1), inputs are
transitive (2), every output file is checked before anything is written (3), ownership is by
marker and record, never by name (4), snapshots under a link are left alone (5), no output
lies inside an input (6).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from rectflow.stages import train as stages
from rectflow.options import TrainConfig
from support import TINY_MODEL, point_cloud, small_pairs, tiny_checkpoint

TRAIN = ["--hidden", 32, "--depth", 2, "--train-steps", 3, "--save-every", 1, "--warmup", 0,
         "--no-eval"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataloss")
    (root / "data").mkdir()
    data = point_cloud(root / "data" / "pts.npy", n=128)
    rf1 = tiny_checkpoint(root / "rf1", data, steps=4)
    small_pairs(rf1, root / "P", n=256, shard_size=128)
    loop = dict(train_steps=3, batch_size=64, warmup=0, save_every=1, log_every=1)
    stages.reflow(root / "P", root / "rf2", evaluate=False,
                  options=TrainConfig(**loop, lr=1e-3))
    stages.train(root / "cond", "8gaussians", model=TINY_MODEL, evaluate=False,
                 options=TrainConfig(**loop, conditional=True))
    return root


@pytest.fixture
def work(base, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(base, w, symlinks=True)
    return w


def hashes(root: Path) -> dict[str, str]:
    """Every entry under ``root`` without following links: file bytes, link targets."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(cli, work: Path, *argv, words: str = "") -> str:
    """Run the command; it must be refused cleanly and leave every existing file as it was."""
    before = hashes(work)
    code, _, err = cli(*argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    after = hashes(work)
    assert {k: after.get(k) for k in before} == before
    assert words in err, err
    return err


def train(work, out, *more):
    return ("train", "--data", work / "data" / "pts.npy", "--out", out, *TRAIN, *more)


# ------------------------------------------------------ 1. never through a link it did not make
def test_a_symlinked_lock_file_is_not_truncated(cli, work):
    (work / "s").mkdir()
    (work / "f").write_text("data\n")
    (work / "s" / ".rf1.rectflow-lock").symlink_to(work / "f")
    refused(cli, work, *train(work, work / "s" / "rf1"), words="lock")
    assert (work / "f").read_text() == "data\n"


def test_a_users_file_named_like_the_lock_is_not_truncated(cli, work):
    (work / ".rf1.rectflow-lock").write_text("my notes\n")
    refused(cli, work, *train(work, work / "rf1", "--overwrite"), words="lock")


def test_a_symlinked_staging_sibling_is_not_written_through(cli, work):
    (work / "elsewhere").mkdir()
    (work / "elsewhere" / "keep.txt").write_text("keep")
    (work / ".rf1.rectflow-new").symlink_to(work / "elsewhere")
    refused(cli, work, *train(work, work / "rf1", "--overwrite"), words="in the way")


def test_a_symlinked_marker_does_not_make_a_folder_rectflows(cli, work):
    (work / "mine").mkdir()
    (work / "mine" / "thesis.tex").write_text("years of work")
    (work / "mine" / ".rectflow").symlink_to(work / "rf1" / ".rectflow")
    refused(cli, work, *train(work, work / "mine", "--overwrite"), words="not made by")


def test_a_link_inside_a_run_is_never_replaced_or_resumed(cli, work):
    (work / "f").write_text("data\n")
    (work / "rf1" / "notes.txt").symlink_to(work / "f")
    refused(cli, work, *train(work, work / "rf1", "--overwrite"), words="symbolic link")
    refused(cli, work, *train(work, work / "rf1", "--resume"), words="symbolic link")


# ------------------------------------------------------------------- 2. inputs are transitive
def test_reflow_cannot_replace_the_teacher_its_pairs_name(cli, work):
    err = refused(cli, work, "reflow", "--pairs", work / "P", "--out", work / "rf1",
                  "--overwrite", *TRAIN[4:])
    assert "teacher" in err


def test_distill_cannot_write_inside_the_teacher(cli, work):
    refused(cli, work, "distill", "--pairs", work / "P", "--out", work / "rf1" / "student",
            *TRAIN[4:], words="lies inside")


def test_couple_cannot_replace_what_its_model_was_made_from(cli, work):
    refused(cli, work, "couple", "--ckpt", work / "rf2", "--out", work / "P", "--overwrite",
            "-n", 64, words="names")


def test_a_teacher_altered_since_the_pairs_is_refused(cli, work):
    manifest = work / "P" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["teacher"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(m))
    refused(cli, work, "reflow", "--pairs", work / "P", "--out", work / "rf3", *TRAIN[4:],
            words="sha256")
    assert not (work / "rf3").exists()


# ------------------------------------------------------- 3. every output is checked up front
def test_conditional_sample_keeps_an_existing_labels_file(cli, work):
    (work / "s.labels.npy").write_bytes(b"my labels")
    refused(cli, work, "sample", "--ckpt", work / "cond", "--out", work / "s.npy", "-n", 16,
            words="s.labels.npy")
    assert not (work / "s.npy").exists()


def test_sample_keeps_an_existing_picture(cli, work):
    (work / "s.png").write_bytes(b"my picture")
    refused(cli, work, "sample", "--ckpt", work / "rf1", "--out", work / "s.npy", "-n", 16,
            words="s.png")
    assert not (work / "s.npy").exists()


def test_interpolate_keeps_the_file_beside_its_picture(cli, work):
    (work / "line.npy").write_bytes(b"mine")
    refused(cli, work, "interpolate", "--ckpt", work / "rf1", "--input",
            work / "data" / "pts.npy", "--out", work / "line.png", words="line.npy")


# ------------------------------------------------------- 4. ownership is never by a name
def test_a_users_temp_named_file_makes_a_folder_not_empty(cli, work):
    (work / "out").mkdir()
    (work / "out" / ".draft.tmp").write_text("my draft")
    refused(cli, work, *train(work, work / "out", "--overwrite"), words="not made by")
    refused(cli, work, "couple", "--ckpt", work / "rf1", "--out", work / "out", "-n", 64)


def test_a_users_file_in_a_run_is_not_replaced_with_it(cli, work):
    (work / "rf1" / ".draft.tmp").write_text("my draft")
    refused(cli, work, *train(work, work / "rf1", "--overwrite"), words=".draft.tmp")
    (work / "P" / "notes.txt").write_text("mine")
    refused(cli, work, "couple", "--ckpt", work / "rf1", "--out", work / "P", "--overwrite",
            "-n", 64, words="notes.txt")


def test_resuming_couple_keeps_a_users_temp_named_file(cli, work):
    """A resumed couple drops its own leftover temporary files, never a user's."""
    code, _, err = cli("couple", "--ckpt", work / "rf1", "--out", work / "Q", "-n", 256,
                       "--shard-size", 128, "--solver", "euler", "--steps", 4)
    assert code == 0, err
    (work / "Q" / "manifest.json").unlink()
    (work / "Q" / "pairs-00001.json").unlink()
    (work / "Q" / ".draft.tmp").write_text("my draft")
    (work / "Q" / ".pairs-00001.safetensors.0a1b2c3d-99.tmp").write_text("mine too")
    code, _, err = cli("couple", "--ckpt", work / "rf1", "--out", work / "Q", "-n", 256,
                       "--shard-size", 128, "--solver", "euler", "--steps", 4)
    assert code == 0, err
    assert (work / "Q" / ".draft.tmp").read_text() == "my draft"
    assert (work / "Q" / ".pairs-00001.safetensors.0a1b2c3d-99.tmp").read_text() == "mine too"


# ------------------------------------------------------ 5. snapshots under links, users' names
def resume(work, out):
    return ("train", "--data", work / "data" / "pts.npy", "--out", out, "--resume",
            "--train-steps", 8, "--no-eval")


def test_a_symlinked_state_folder_is_not_resumed_into(cli, work):
    shutil.rmtree(work / "rf1" / "state")
    (work / "rf1" / "state").symlink_to(work / "rf2" / "state")
    refused(cli, work, *resume(work, work / "rf1"), words="symbolic link")


def test_a_symlinked_snapshot_is_not_resumed_into(cli, work):
    theirs = next((work / "rf2" / "state").glob("step-*"))
    (work / "rf1" / "state" / "step-00000001").symlink_to(theirs)
    refused(cli, work, *resume(work, work / "rf1"), words="symbolic link")


@pytest.mark.parametrize("name", ["step-00000001", ".tmp-step-00000002"])
def test_a_users_folder_named_like_a_snapshot_is_kept(cli, work, name):
    users = work / "rf1" / "state" / name
    users.mkdir()
    (users / "meta.json").write_text("{}")
    refused(cli, work, *resume(work, work / "rf1"), words="not made by this run")


def test_a_users_file_inside_a_snapshot_is_kept(cli, work):
    snap = next((work / "rf1" / "state").glob("step-*"))
    (snap / "notes.txt").write_text("mine")
    refused(cli, work, *resume(work, work / "rf1"), words="not made by this run")


# ----------------------------------------------------------- 6. no output inside an input
def test_animate_cannot_write_into_a_model_folder(cli, work):
    refused(cli, work, "animate", "--ckpt", work / "rf1", "--out", work / "rf1" / "flow.gif",
            "--frames", 2, "--n", 8, words="lies inside")


def test_sample_cannot_write_into_what_its_model_names(cli, work):
    refused(cli, work, "sample", "--ckpt", work / "rf2", "--out", work / "rf1" / "s.npy",
            "-n", 8, words="names")
    refused(cli, work, "eval", "--ckpt", work / "rf2", "--out", work / "P" / "e.json",
            words="names")


def test_explore_cannot_write_into_a_model_folder(cli, work):
    refused(cli, work, "explore", "--ckpt", work / "rf1", "--out", work / "rf1" / "page.html",
            words="lies inside")


def test_transport_outputs_never_lie_inside_the_source_or_data(cli, work):
    src = work / "src"
    src.mkdir()
    (src / "keep.npy").write_bytes((work / "data" / "pts.npy").read_bytes())
    cfg = work / "rf1" / "config.json"
    card = json.loads(cfg.read_text())
    card["source"] = {"data": {"name": "imagefolder", "root": str(src)},
                      "normalization": {"mean": 0.0, "std": 1.0}}
    cfg.write_text(json.dumps(card))
    refused(cli, work, "invert", "--ckpt", work / "rf1", "--input", src / "keep.npy",
            "--out", src / "inv.npy", words="lies inside")
    refused(cli, work, "translate", "--ckpt", work / "rf1", "--input", work / "data" / "pts.npy",
            "--out", src / "t", words="lies inside")
    refused(cli, work, "interpolate", "--ckpt", work / "rf2", "--input",
            work / "data" / "pts.npy", "--out", work / "rf1" / "line.png", words="names")
