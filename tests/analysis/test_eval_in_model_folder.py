"""`rectflow eval` keeps one evaluation file per model: the model folder's own eval.json
(rectflow made that folder and records its files), elsewhere only with --out."""
import json
import shutil

import pytest

from rectflow.io.remove import JOURNAL, recorded


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from rectflow.cli.main import main
    out = tmp_path_factory.mktemp("evalfile") / "rf1"
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(out), "--train-steps", "4", "--batch-size", "64",
              "--no-eval", "--threads", "1"])
    assert e.value.code == 0
    return out


EVAL = ["--steps", "1,2", "--n", "64", "--path-steps", "4", "--no-adaptive", "--seeds", "1"]


def test_eval_writes_and_refreshes_the_model_folders_own_report(cli, model):
    code, stdout, err = cli("eval", "--ckpt", model, *EVAL)
    assert code == 0, err
    report = model / "eval.json"
    assert json.loads(report.read_text())["args"]["steps"] == [1, 2]
    assert "eval.json" in recorded(model)                       # rectflow's file, recorded
    assert not list(model.parent.glob("*-eval.json"))           # nothing beside the model
    assert str(report) in " ".join(stdout.split())
    code, stdout, err = cli("eval", "--ckpt", model, *EVAL[2:], "--steps", "1")   # refreshed
    assert code == 0, err
    assert json.loads(report.read_text())["args"]["steps"] == [1]
    code, stdout, err = cli("eval", "--ckpt", model, *EVAL[2:], "--steps", "1")   # reused
    assert code == 0 and "cached" in stdout


def test_eval_writes_elsewhere_only_when_told(cli, model, tmp_path):
    out = tmp_path / "e.json"
    before = (model / "eval.json").read_bytes() if (model / "eval.json").exists() else None
    code, _, err = cli("eval", "--ckpt", model, *EVAL, "--recompute", "--out", out)
    assert code == 0, err
    assert out.is_file()
    after = (model / "eval.json").read_bytes() if (model / "eval.json").exists() else None
    assert after == before


def test_eval_refuses_a_folder_rectflow_did_not_make_and_a_users_file(cli, model, tmp_path):
    copy = tmp_path / "copied"
    shutil.copytree(model, copy)
    for name in (".rectflow", JOURNAL, "eval.json"):
        (copy / name).unlink(missing_ok=True)
    code, _, err = cli("eval", "--ckpt", copy, *EVAL)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "made by rectflow" in err
    assert not (copy / "eval.json").exists()
    assert cli("eval", "--ckpt", copy, *EVAL, "--out", tmp_path / "c.json")[0] == 0
    # a user's eval.json in a rectflow model folder is not written over
    own = tmp_path / "own"
    shutil.copytree(model, own)
    (own / "eval.json").unlink(missing_ok=True)
    journal = own / JOURNAL
    journal.write_text("".join(f"{x}\n" for x in recorded(own) if x != "eval.json"))
    (own / "eval.json").write_text("my notes\n")
    code, _, err = cli("eval", "--ckpt", own, *EVAL)
    assert code == 2 and "not written by rectflow" in err
    assert (own / "eval.json").read_text() == "my notes\n"
