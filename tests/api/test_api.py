"""The Python API (issue 11): the README's example runs; a user's own nn.Module trains, couples,
reflows and distills; resume keeps the saved run's settings; importing changes nothing."""
import logging
import subprocess
import sys

import pytest
import torch
from torch import nn

import rectflow
from rectflow.errors import CheckpointError, OptionError, UserError
from rectflow.records import Comparison, EvalReport, PairsManifest, RunCard


class TinyNet(nn.Module):
    """A user's own velocity model: net(x, t)."""

    def __init__(self, dim: int = 2, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], 1))


FAST = dict(batch_size=256, log_every=10, save_every=1000, warmup=0, lr=3e-3)


def test_readme_example_runs(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rectflow")
    flow = rectflow.train(data="moons", train_steps=40, out=tmp_path / "rf1", eval_n=200, **FAST)
    assert isinstance(flow, rectflow.Flow) and flow.card.stage == "train"
    assert any("step 40/40" in r.getMessage() for r in caplog.records)   # progress is logged
    x = flow.sample(300, steps=4)
    assert x.shape == (300, 2) and torch.isfinite(x).all()
    assert torch.equal(x, flow.sample(300, steps=4))                   # seeded
    pairs = flow.couple(tmp_path / "pairs", n=1024, solver="euler", steps=4, shard_size=512)
    assert isinstance(pairs, PairsManifest) and pairs.n == 1024 and pairs.nfe == 4
    rf2 = rectflow.reflow(tmp_path / "pairs", out=tmp_path / "rf2", train_steps=20, eval_n=200,
                          **{k: v for k, v in FAST.items() if k != "warmup"})
    student = rectflow.distill(tmp_path / "pairs", out=tmp_path / "distill", train_steps=20,
                               eval_n=200, batch_size=256)
    assert rf2.card.round == 2 and student.card.sample["steps"] == 1
    report = rectflow.evaluate(rf2, steps=(1, 2), n=200, seeds=2, adaptive=False)
    assert isinstance(report, EvalReport) and set(report.quality) == {"1", "2"}
    assert report.floors["w2"] > 0 and report.quality["1"]["w2_std"] >= 0
    table = rectflow.compare([flow, rf2, student], out=tmp_path / "cmp", steps=(1,), n=200,
                             seeds=2, adaptive=False, path_steps=10)
    assert isinstance(table, Comparison)
    assert [r["name"] for r in table.rows] == ["rf1", "distill", "rf2"]   # student after its init
    assert rectflow.load(tmp_path / "rf2").card == rf2.card


def test_own_module_through_every_stage(tmp_path):
    net = TinyNet()
    flow = rectflow.train(data="8gaussians", train_steps=30, out=tmp_path / "rf1", model=net,
                          evaluate=False, **FAST)
    assert flow.card.model["type"] == "custom" and flow.card.model["class"].endswith("TinyNet")
    with pytest.raises(CheckpointError, match="TinyNet"):       # says what to import
        rectflow.load(tmp_path / "rf1")
    back = rectflow.load(tmp_path / "rf1", model=TinyNet())
    assert torch.equal(back.sample(64, steps=2), flow.sample(64, steps=2))
    back.couple(tmp_path / "pairs", n=512, steps=2, shard_size=512)
    rf2 = rectflow.reflow(tmp_path / "pairs", out=tmp_path / "rf2", model=TinyNet(),
                          train_steps=10, evaluate=False, batch_size=128)
    student = rectflow.distill(tmp_path / "pairs", out=tmp_path / "d", model=TinyNet(),
                               train_steps=10, evaluate=False, batch_size=128)
    assert rf2.card.is_custom and student.sample(16).shape == (16, 2)


def test_resume_keeps_the_saved_settings_unless_given(tmp_path, cli):
    out = tmp_path / "rf1"
    code, _, err = cli("train", "--data", "moons", "--out", out, "--train-steps", 20,
                       "--batch-size", 128, "--log-every", 4, "--save-every", 20, "--no-eval")
    assert code == 0, err
    code, _, err = cli("train", "--out", out, "--resume", "--no-eval")   # nothing re-given
    assert code == 0, err
    card = RunCard.read(out)
    assert card.train["train_steps"] == 20 and card.train["batch_size"] == 128
    assert card.train["log_every"] == 4 and card.steps_done == 20
    code, _, err = cli("train", "--out", out, "--resume", "--train-steps", 28, "--no-eval")
    assert code == 0, err
    card = RunCard.read(out)
    assert card.steps_done == 28 and card.train["batch_size"] == 128
    steps = [int(line.split('"step": ')[1].split(",")[0])
             for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12, 16, 20, 24, 28]
    code, _, err = cli("train", "--out", out, "--resume", "--batch-size", 64, "--no-eval")
    assert code == 2 and "keeps its batch_size" in err


def test_library_errors_name_fields_the_cli_names_flags(tmp_path, cli):
    with pytest.raises(OptionError, match=r"^batch_size must be >= 1"):
        rectflow.train(data="moons", train_steps=5, batch_size=0, out=tmp_path / "x")
    code, _, err = cli("train", "--batch-size", 0, "--out", tmp_path / "y")
    assert code == 2 and "--batch-size must be >= 1" in err
    with pytest.raises(UserError, match="unknown option 'stepz'"):
        rectflow.train(data="moons", stepz=5, out=tmp_path / "z")


def test_import_changes_no_global_state():
    code = ("import os, sys, torch; m = os.umask(0o027); os.umask(m); s = torch.initial_seed(); "
            "import rectflow, rectflow.api, rectflow.stages.train, rectflow.analysis.features; "
            "m2 = os.umask(0o027); os.umask(m2); "
            "assert m2 == m and torch.initial_seed() == s, 'global state changed'; "
            "assert 'rectflow.cli' not in sys.modules and 'typer' not in sys.modules; "
            "assert sys.stdout is sys.__stdout__")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"rectflow {rectflow.__version__}"
