"""Wrong invocations of every command: one line on stderr, exit 2, no traceback, and nothing
that existed before is changed, deleted or added to.

One table of cases over shared inputs (a trained 2-D checkpoint, a 3-D one, a pairs folder, data
files, earlier outputs); each case names its command line and a word the message must contain.
The CLI runs in-process, in the inputs' folder, and the whole folder (bytes, mtimes, modes) is
compared before and after every case.
"""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from support import refused, variant, edit_json, point_cloud, small_pairs, tiny_checkpoint, tree_state


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Every input a case may name, built once; cases only read it."""
    r = tmp_path_factory.mktemp("bad")
    point_cloud(r / "pts.npy")
    ck = tiny_checkpoint(r / "ck", r / "pts.npy", steps=5)
    tiny_checkpoint(r / "ck3", point_cloud(r / "pts3.npy", dim=3), steps=5)
    small_pairs(ck, r / "pairs", n=512)

    edit_json(variant(ck, r / "ck_mismatch") / "config.json", model__hidden=48)
    edit_json(variant(ck, r / "ck_badmodel") / "config.json", model__hidden=-3)
    (variant(ck, r / "ck_badjson") / "config.json").write_text('{"model": ')
    ema = variant(ck, r / "ck_truncated") / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[: ema.stat().st_size // 2])
    (variant(ck, r / "ck_pickle") / "ema.safetensors").write_bytes(pickle.dumps({"w": [1.0]}))

    shard = variant(r / "pairs", r / "pairs_flipped") / "pairs-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF
    shard.write_bytes(bytes(raw))
    edit_json(variant(r / "pairs", r / "pairs_escape") / "manifest.json",
              shards=[{"file": "../../x.safetensors", "start": 0, "count": 512,
                       "sha256": "0" * 64}])
    (variant(r / "pairs", r / "pairs_unfinished") / "manifest.json").unlink()
    edit_json(variant(r / "pairs", r / "pairs_noteacher") / "manifest.json",
              teacher__path="../../../../../../../etc")

    x = np.load(r / "pts.npy")
    x[7, 1] = np.nan
    np.save(r / "nan.npy", x)
    np.save(r / "flat.npy", x[:, 0])
    np.save(r / "text.npy", np.array([["a", "b"], ["c", "d"], ["e", "f"]]))
    (r / "empty_dir").mkdir()
    (r / "read_only").mkdir(mode=0o555)
    (r / "blocker").write_text("a regular file, so nothing can be created under it\n")
    np.save(r / "samples.npy", x)
    from PIL import Image
    (r / "pics").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(r / "pics" / f"{i}.png")
    (r / "user_data").mkdir()
    (r / "user_data" / "notes.txt").write_text("a user's own files\n")
    (r / "existing.gif").write_bytes(b"GIF89a")
    link = variant(r / "pairs", r / "pairs_symlink")
    (r / "elsewhere").mkdir()
    (link / "pairs-00001.safetensors").rename(r / "elsewhere" / "pairs-00001.safetensors")
    (link / "pairs-00001.safetensors").symlink_to(r / "elsewhere" / "pairs-00001.safetensors")
    edit_json(variant(ck, r / "ck_newer") / "config.json", version=99)
    (r / "unknown_key.toml").write_text("[train]\ntrain_steps = 10\nno_such_option = 3\n")
    (r / "wrong_type.toml").write_text('[train]\ntrain_steps = "many"\n')
    (r / "not_toml.toml").write_text("[train\nsteps = \n")
    return r


# (id, argv, a word the one-line message must contain). Paths are relative to the inputs.
TRAIN = ["train", "--data", "pts.npy", "--out", "new_run", "--train-steps", "5"]
CASES = [
    # train
    ("train-unknown-dataset", ["train", "--data", "nosuchset", "--out", "x"], "unknown dataset"),
    ("train-missing-file", ["train", "--data", "missing.npy", "--out", "x"], "does not exist"),
    ("train-empty-folder", ["train", "--data", "empty_dir", "--out", "x"], "empty_dir"),
    ("train-nan-data", ["train", "--data", "nan.npy", "--out", "x"], "nan"),
    ("train-1d-data", ["train", "--data", "flat.npy", "--out", "x"], "[n, d]"),
    ("train-text-data", ["train", "--data", "text.npy", "--out", "x"], "numbers"),
    ("train-zero-steps", TRAIN + ["--train-steps", "0"], "--train-steps"),
    ("train-negative-batch", TRAIN + ["--batch-size", "-8"], "--batch-size"),
    ("train-zero-lr", TRAIN + ["--lr", "0"], "--lr"),
    ("train-zero-hidden", TRAIN + ["--hidden", "0"], "hidden"),
    ("train-negative-depth", TRAIN + ["--depth", "-2"], "depth"),
    ("train-unknown-tracker", TRAIN + ["--log-with", "nosuchtracker"], "--log-with"),
    ("train-unknown-time-dist", TRAIN + ["--time-dist", "gamma"], "time"),
    ("train-unknown-loss", TRAIN + ["--loss", "l7"], "loss"),
    ("train-unknown-coupling", TRAIN + ["--coupling", "magic"], "coupling"),
    ("train-bad-precision", TRAIN + ["--mixed-precision", "fp8"], "mixed-precision"),
    ("train-unknown-option", TRAIN + ["--learning-rate", "1"], "learning-rate"),
    ("train-not-a-number", TRAIN + ["--train-steps", "ten"], "steps"),
    ("train-out-exists", ["train", "--data", "pts.npy", "--out", "ck"], "--overwrite"),
    ("train-overwrite-bad-batch", ["train", "--data", "pts.npy", "--out", "ck", "--overwrite",
                                   "--batch-size", "10", "--grad-accum", "3"], "divisible"),
    ("train-out-is-file", ["train", "--data", "pts.npy", "--out", "blocker"], "file"),
    ("train-out-unwritable", TRAIN[:3] + ["--out", "blocker/run", "--train-steps", "5"], "blocker"),
    pytest.param("train-out-read-only", TRAIN[:3] + ["--out", "read_only/run"], "writable",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root ignores chmod 555; "
                                          "train-out-unwritable covers this case")),
    ("train-resume-fewer-steps", ["train", "--out", "ck", "--resume", "--train-steps", "2"], "below"),
    ("train-resume-bad-config", ["train", "--out", "ck_badjson", "--resume"], "json"),
    # sample
    ("sample-missing-ckpt", ["sample", "--ckpt", "nock", "--out", "s.npy"], "does not exist"),
    ("sample-config-vs-weights", ["sample", "--ckpt", "ck_mismatch", "--out", "s.npy"],
     "another model"),
    ("sample-negative-size-config", ["sample", "--ckpt", "ck_badmodel", "--out", "s.npy"],
     "hidden"),
    ("sample-truncated-weights", ["sample", "--ckpt", "ck_truncated", "--out", "s.npy"],
     "safetensors"),
    ("sample-pickle-weights", ["sample", "--ckpt", "ck_pickle", "--out", "s.npy"], "safetensors"),
    ("sample-bad-config-json", ["sample", "--ckpt", "ck_badjson", "--out", "s.npy"], "json"),
    ("sample-pairs-as-ckpt", ["sample", "--ckpt", "pairs", "--out", "s.npy"], "config.json"),
    ("sample-nfe-0", ["sample", "--ckpt", "ck", "--out", "s.npy", "--steps", "0"], "--steps"),
    ("sample-n-0", ["sample", "--ckpt", "ck", "--out", "s.npy", "--n", "0"], "--n"),
    ("sample-unknown-solver", ["sample", "--ckpt", "ck", "--out", "s.npy", "--solver", "rk9"],
     "solver"),
    ("sample-out-exists", ["sample", "--ckpt", "ck", "--out", "samples.npy"], "--overwrite"),
    ("sample-out-unwritable", ["sample", "--ckpt", "ck", "--out", "blocker/s.npy"], "blocker"),
    # couple
    ("couple-missing-ckpt", ["couple", "--ckpt", "nock", "--out", "p"], "does not exist"),
    ("couple-n-0", ["couple", "--ckpt", "ck", "--out", "p", "--n", "0"], "--n"),
    ("couple-nfe-0", ["couple", "--ckpt", "ck", "--out", "p", "--steps", "0"], "--steps"),
    ("couple-negative-batch", ["couple", "--ckpt", "ck", "--out", "p", "--batch-size", "-1"],
     "--batch-size"),
    ("couple-unknown-solver", ["couple", "--ckpt", "ck", "--out", "p", "--solver", "magic"],
     "solver"),
    ("couple-out-not-pairs", ["couple", "--ckpt", "ck", "--out", "ck3"], "ck3"),
    ("couple-out-is-file", ["couple", "--ckpt", "ck", "--out", "blocker", "--n", "64"], "file"),
    ("couple-out-unwritable", ["couple", "--ckpt", "ck", "--out", "blocker/p", "--n", "64"],
     "blocker"),
    # reflow / distill
    ("reflow-missing-pairs", ["reflow", "--pairs", "nopairs", "--out", "r"], "does not exist"),
    ("reflow-unfinished-pairs", ["reflow", "--pairs", "pairs_unfinished", "--out", "r"],
     "manifest"),
    ("reflow-checkpoint-as-pairs", ["reflow", "--pairs", "ck", "--out", "r"], "manifest"),
    ("reflow-init-other-shape", ["reflow", "--pairs", "pairs", "--init", "ck3", "--out", "r"],
     "shape"),
    ("reflow-corrupt-shard", ["reflow", "--pairs", "pairs_flipped", "--out", "r"], "sha256"),
    ("reflow-shard-escapes", ["reflow", "--pairs", "pairs_escape", "--out", "r"], "../../x"),
    ("reflow-teacher-not-checkpoint", ["reflow", "--pairs", "pairs_noteacher", "--out", "r"],
     "has no config.json"),
    ("reflow-out-exists", ["reflow", "--pairs", "pairs", "--out", "ck3"], "--overwrite"),
    ("reflow-zero-steps", ["reflow", "--pairs", "pairs", "--out", "r", "--train-steps", "0"],
     "--train-steps"),
    ("distill-k-0", ["distill", "--pairs", "pairs", "--out", "d", "--k", "0"], "--k"),
    ("distill-init-mismatch", ["distill", "--pairs", "pairs", "--init", "ck_mismatch",
                               "--out", "d"], "another model"),
    ("distill-out-unwritable", ["distill", "--pairs", "pairs", "--out", "blocker/d"], "blocker"),
    # eval / compare / animate / run
    ("eval-missing-ckpt", ["eval", "--ckpt", "nock"], "does not exist"),
    ("eval-bad-steps", ["eval", "--ckpt", "ck", "--steps", "one,two"], "steps"),
    ("eval-nfe-0", ["eval", "--ckpt", "ck", "--steps", "0"], "--steps"),
    ("eval-truncated-weights", ["eval", "--ckpt", "ck_truncated"], "safetensors"),
    ("compare-missing-folder", ["compare", "--ckpt", "nock", "--out", "cmp"], "nock"),
    ("animate-missing-ckpt", ["animate", "--ckpt", "nock", "--out", "a.gif"], "nock"),
    ("animate-zero-frames", ["animate", "--ckpt", "ck", "--out", "a.gif", "--frames", "0"],
     "frames"),
    ("run-unknown-preset", ["run", "--preset", "nosuch", "--out", "run"], "nosuch"),
    ("run-config-unknown-key", ["run", "--config", "unknown_key.toml", "--out", "run"],
     "no_such_option"),
    ("run-config-wrong-type", ["run", "--config", "wrong_type.toml", "--out", "run"], "steps"),
    ("run-config-not-toml", ["run", "--config", "not_toml.toml", "--out", "run"], "toml"),
    ("run-config-missing", ["run", "--config", "nowhere.toml", "--out", "run"], "nowhere"),
    # nothing a user owns is ever lost (issue 12)
    ("overwrite-the-data-folder", ["train", "--data", "pics", "--out", "pics", "--overwrite"],
     "input"),
    ("overwrite-the-working-folder", TRAIN[:3] + ["--out", ".", "--overwrite"], "working"),
    ("overwrite-a-parent-of-cwd", TRAIN[:3] + ["--out", "..", "--overwrite"], "contains"),
    ("overwrite-a-users-folder", TRAIN[:3] + ["--out", "user_data", "--overwrite"],
     "not made by rectflow"),
    ("overwrite-the-root", TRAIN[:3] + ["--out", "/", "--overwrite"], "root"),
    ("couple-over-its-teacher", ["couple", "--ckpt", "ck", "--out", "ck", "--overwrite"],
     "input"),
    ("reflow-out-inside-its-pairs", ["reflow", "--pairs", "pairs", "--out", "pairs/r"],
     "inside"),
    ("compare-out-is-a-checkpoint", ["compare", "--ckpt", "ck", "--out", "ck"], "input"),
    ("sample-into-the-model-folder", ["sample", "--ckpt", "ck", "--out", "ck/s.npy"], "inside"),
    ("eval-over-the-model-config", ["eval", "--ckpt", "ck", "--out", "ck/config.json"],
     "inside"),
    ("eval-over-a-users-file", ["eval", "--ckpt", "ck", "--out", "user_data/notes.txt",
                                "--steps", "1", "-n", "16"], "notes"),
    ("animate-over-an-existing-file", ["animate", "--ckpt", "ck", "--out", "existing.gif"],
     "--overwrite"),
    ("resume-a-missing-run", ["train", "--out", "nowhere_run", "--resume"], "no rectflow run"),
    ("resume-a-users-folder", ["train", "--out", "user_data", "--resume"],
     "not made by rectflow"),
    ("resume-another-stage", ["reflow", "--pairs", "pairs", "--out", "ck3", "--resume"],
     "train run"),
    ("reflow-symlinked-shard", ["reflow", "--pairs", "pairs_symlink", "--out", "r"], "link"),
    ("sample-newer-format", ["sample", "--ckpt", "ck_newer", "--out", "s.npy"], "newer"),
    # bounded numerics and sizes
    ("train-lr-inf", TRAIN + ["--lr", "inf"], "--lr"),
    ("train-lr-negative", TRAIN + ["--lr", "-1"], "--lr"),
    ("train-ema-2", TRAIN + ["--ema-decay", "2"], "--ema-decay"),
    ("train-huber-nan", TRAIN + ["--loss", "pseudo-huber", "--huber-c", "nan"], "--huber-c"),
    ("train-channels-2", ["train", "--data", "pics", "--out", "x", "--channels", "2"],
     "channels"),
    ("couple-rtol-tiny", ["couple", "--ckpt", "ck", "--out", "p", "--solver", "dopri5",
                          "--rtol", "1e-30"], "--rtol"),
    ("sample-rtol-nan", ["sample", "--ckpt", "ck", "--out", "s.npy", "--solver", "dopri5",
                         "--rtol", "nan"], "rtol"),
    ("sample-n-too-large", ["sample", "--ckpt", "ck", "--out", "s.npy", "-n", "10000000000"],
     "needs"),
    ("distill-k-huge", ["distill", "--pairs", "pairs", "--out", "d", "--k", "1000000000"], "k"),
    # explore, invert, translate, interpolate
    ("explore-missing-ckpt", ["explore", "--ckpt", "nock", "--out", "p.html"], "nock"),
    ("explore-not-html", ["explore", "--ckpt", "ck", "--out", "p.txt"], "html"),
    ("explore-inside-the-model", ["explore", "--ckpt", "ck", "--out", "ck/p.html"], "inside"),
    ("invert-missing-input", ["invert", "--ckpt", "ck", "--input", "nothing.npy",
                              "--out", "src.npy"], "nothing.npy"),
    ("invert-over-the-input", ["invert", "--ckpt", "ck", "--input", "pts.npy",
                               "--out", "pts.npy"], "pts.npy"),
    ("translate-into-the-model", ["translate", "--ckpt", "ck", "--input", "pts.npy",
                                  "--out", "ck/tr"], "ck"),
    ("translate-wrong-shape", ["translate", "--ckpt", "ck3", "--input", "pts.npy",
                               "--out", "tr"], "shape"),
    ("interpolate-missing-input", ["interpolate", "--ckpt", "ck", "--input", "nothing.npy",
                                   "--out", "path.png"], "nothing.npy"),
    ("train-batch-too-large", ["train", "--data", "pics", "--out", "x", "--batch-size",
                               "10000000"], "needs"),
]


def _values(case) -> tuple:
    return tuple(case.values) if hasattr(case, "values") else case


def test_the_table_covers_every_command():
    from rectflow.cli.main import app
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert commands <= {_values(c)[1][0] for c in CASES}, "a command has no bad-input case"
    assert len(CASES) >= 95


@pytest.mark.parametrize("case,argv,word", CASES, ids=[_values(c)[0] for c in CASES])
def test_bad_invocation_is_one_line_exit_2_and_touches_nothing(cli, root, monkeypatch, case,
                                                               argv, word):
    refused(cli, root, monkeypatch, argv, word)


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "5",
                                                    "MASTER_ADDR": "127.0.0.1",
                                                    "MASTER_PORT": "29999"},
                                 {"WORLD_SIZE": "two"}])
def test_stray_launcher_variables_are_one_line(cli, root, monkeypatch, env):
    monkeypatch.chdir(root)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = tree_state(root)
    code, _, err = cli(*TRAIN)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "WORLD_SIZE" in err, err
    assert tree_state(root) == before


def test_rank_alone_does_not_silence_output(cli, root, monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    code, out, err = cli("sample", "--ckpt", root / "ck", "--out", tmp_path / "s.npy", "-n", 8)
    assert code == 0 and "wrote 8 samples" in " ".join(out.split()), err
