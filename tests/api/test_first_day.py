"""A newcomer's first day (issue 25): the API shows progress by default, names mean one thing
(train_steps; the old steps= still works, once said), old records still load, the CLI answers
--help without torch and points reflow --ckpt to couple."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import rectflow
from rectflow.records import EvalReport, ResolvedRun, RunCard

ROOT = Path(__file__).parents[1]
TINY = dict(batch_size=64, log_every=2, warmup=0, evaluate=False)


def test_api_shows_progress_on_stderr_by_default_and_nothing_when_off(tmp_path, capsys):
    rectflow.train(data="moons", train_steps=4, out=tmp_path / "a", **TINY)
    err = capsys.readouterr().err
    assert "train 4/4 (100%)" in err and "samples/s (median)" in err   # plain: not a TTY
    assert f"train done: {tmp_path / 'a'} (4 steps)" in err
    rectflow.train(data="moons", train_steps=4, out=tmp_path / "b", progress=False, **TINY)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
    events = []
    rectflow.train(data="moons", train_steps=4, out=tmp_path / "c", callback=events.append,
                   **TINY)
    assert capsys.readouterr().err == "" and events[-1]["event"] == "save"


def test_old_steps_name_still_trains_with_one_warning(tmp_path):
    with pytest.warns(FutureWarning, match="'steps' is now 'train_steps'") as caught:
        flow = rectflow.train(data="moons", steps=3, out=tmp_path / "a", progress=False,
                              **TINY)
    assert flow.card.train["train_steps"] == 3 and "steps" not in flow.card.train
    assert len([w for w in caught if w.category is FutureWarning]) == 1
    assert caught[0].filename == __file__   # points at the caller's line
    with pytest.raises(rectflow.errors.UserError, match="give train_steps only"):
        rectflow.train(data="moons", steps=3, train_steps=3, out=tmp_path / "b", **TINY)


def test_toml_steps_key_still_works_with_one_line(tmp_path, cli):
    cfg = tmp_path / "old.toml"
    cfg.write_text("[train]\nsteps = 3\nbatch_size = 64\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = cli("train", "--data", "moons", "--out", tmp_path / "r", "--config", cfg,
                           "--no-eval", "--threads", "1")
    assert code == 0, err
    assert any("'steps' is now 'train_steps'" in str(w.message) for w in caught)
    assert RunCard.read(tmp_path / "r").train["train_steps"] == 3


def test_records_that_say_steps_still_load_and_resume(tmp_path, cli):
    run = tmp_path / "r"
    code, _, err = cli("train", "--data", "moons", "--out", run, "--train-steps", 3,
                       "--batch-size", 64, "--save-every", 2, "--no-eval", "--threads", "1")
    assert code == 0, err
    card = json.loads((run / "config.json").read_text())   # as rectflow 0.2 wrote it
    card["version"] = 2
    card["train"]["steps"] = card["train"].pop("train_steps")
    card["steps_done"], card["complete"] = 2, False
    (run / "config.json").write_text(json.dumps(card))
    assert RunCard.read(run).train["train_steps"] == 3
    code, _, err = cli("train", "--out", run, "--resume", "--train-steps", 5, "--no-eval",
                       "--threads", "1")
    assert code == 0, err
    assert RunCard.read(run).steps_done == 5
    old = {"format": ResolvedRun.FORMAT, "version": 1,
           "config": {"train": {"steps": 7}, "reflow": {"steps": 8}, "couple": {"steps": 9}}}
    (tmp_path / "resolved.json").write_text(json.dumps(old))
    cfg = ResolvedRun.read(tmp_path / "resolved.json").config
    assert cfg["train"] == {"train_steps": 7} and cfg["reflow"] == {"train_steps": 8}
    assert cfg["couple"] == {"steps": 9}   # solver steps keep their name


def test_half_trained_model_is_said_when_sampled(tmp_path, cli):
    run = tmp_path / "r"
    assert cli("train", "--data", "moons", "--out", run, "--train-steps", 2, "--batch-size", 64,
               "--no-eval", "--threads", "1")[0] == 0
    card = json.loads((run / "config.json").read_text())
    card["complete"], card["steps_done"] = False, 1
    (run / "config.json").write_text(json.dumps(card))
    code, out, err = cli("sample", "--ckpt", run, "--out", tmp_path / "s.npy", "-n", 8,
                         "--steps", 1)
    assert code == 0, err
    assert "is half-trained (1 of 2 steps, complete: false)" in out
    assert "1 step," in out and "1 steps" not in out
    code, out, err = cli("sample", "--ckpt", run, "--out", tmp_path / "notes.txt", "-n", 8,
                         "--steps", 1)
    assert code == 0, err   # a name that is not .npy is said, not silently changed
    assert f"samples are written as .npy: {tmp_path / 'notes.txt.npy'}, not" in out
    assert (tmp_path / "notes.txt.npy").is_file() and not (tmp_path / "notes.txt").exists()


def test_help_and_version_do_not_import_torch():
    code = """
import sys
from rectflow.cli.main import main
for argv in (["--help"], ["--version"]):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, e.code
assert "torch" not in sys.modules, "torch was imported"
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert "rectflow 0." in r.stdout and "reflow" in r.stdout


def test_listed_helps_are_the_commands_own():
    from rectflow.cli.main import COMMANDS, load_command
    for name, (_, _, line) in COMMANDS.items():
        assert load_command(name).help.strip().splitlines()[0] == line, name


def test_reflow_given_a_model_points_to_couple(cli):
    code, _, err = cli("reflow", "--ckpt", "runs/rf1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "rectflow couple --ckpt runs/rf1" in err and "rectflow reflow --pairs" in err


def test_result_line_states_sample_size_and_floor(tmp_path, capsys):
    """The API's one result line reads against the measurement's noise: n and the floor."""
    flow = rectflow.train(data="moons", train_steps=2, out=tmp_path / "a",
                          **{**TINY, "evaluate": True}, eval_n=64)
    err = capsys.readouterr().err
    report = EvalReport.read(flow.path / EvalReport.FILENAME)   # the stage's own evaluation
    floor = report.floors["w2"]
    assert f"(n={report.n}; floor {floor:.4g})" in err and "W2 1 step" in err
