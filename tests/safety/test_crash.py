"""Crash safety: SIGKILL at a random step, then ``--resume``; and runs whose loss turns NaN/inf.

A killed train/reflow/distill run, resumed, must end with the weights of an uninterrupted run
(within 1e-6 on CPU), a log with every step once, and no half-written file under a final name
at any moment. The kill step (and a small extra delay, so the kill can land inside a save) is a
seeded random choice; saves are frequent so kills often hit one. The uninterrupted reference
run goes through the Python API (no evaluation, to save time) and is checked to have the very
settings the CLI saved.
"""
import random
import re
import shlex
import signal
import subprocess
import time
from dataclasses import replace

import pytest
import torch

from rectflow.stages import train as stages
from rectflow.records.checkpoint import Checkpoint, latest_snapshot, load_snapshot
from rectflow.io.files import load_tensors
from rectflow.training.pairs import IndependentPairs, PairSource
from rectflow.data import load_dataset
from rectflow.errors import TrainingDiverged
from rectflow.models import build_model, default_model_config
from rectflow.records import RunCard
from rectflow.training.loop import TrainConfig, fit

from support import (TINY_MODEL, assert_log_continuous, assert_no_torn_files, cli_cmd, flags,
                     log_records, max_weight_diff, point_cloud, small_pairs, subprocess_env,
                     tiny_checkpoint)

STEPS = 96
LOOP = dict(train_steps=STEPS, batch_size=64, save_every=4, log_every=2)
FLAGS = flags(**LOOP)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Per stage: the CLI arguments, and the same run through the API (out -> folder)."""
    root = tmp_path_factory.mktemp("crash")
    data = point_cloud(root / "pts.npy")
    pairs = small_pairs(tiny_checkpoint(root / "teacher", data), root / "pairs")
    train_cfg = TrainConfig(lr=1e-2, warmup=0, **LOOP)
    return {
        "train": (["train", "--data", data, "--hidden", TINY_MODEL["hidden"], "--depth",
                   TINY_MODEL["depth"], "--lr", "1e-2", "--warmup", 0, "--time-dist",
                   "uniform", *FLAGS],   # as train_cfg: the 2-D recipe's t is logit-normal
                  lambda out: stages.train(out, str(data), model=TINY_MODEL, options=train_cfg,
                                           evaluate=False).path),
        "reflow": (["reflow", "--pairs", pairs, *FLAGS],
                   lambda out: stages.reflow(pairs, out, evaluate=False,
                                             options=replace(stages.reflow_defaults(), **LOOP)).path),
        "distill": (["distill", "--pairs", pairs, *FLAGS],
                    lambda out: stages.distill(pairs, out, evaluate=False,
                                               options=replace(stages.distill_defaults(), **LOOP)).path),
    }


def last_logged_step(out) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return int(re.match(r'\{"step": (\d+)', lines[-1]).group(1))
    except (OSError, IndexError, AttributeError):
        return 0


def kill_at_random_step(argv: list, out, rng: random.Random) -> int:
    """Start the command, SIGKILL it once its log shows a step >= a random k (plus a random
    delay of a few ms); return k. Fails if the run finished first."""
    k = rng.randint(4, STEPS * 2 // 3)
    proc = subprocess.Popen(cli_cmd(*argv, "--out", out), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if last_logged_step(out) >= k:
                time.sleep(rng.uniform(0, 0.03))
                break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {k} was reached"
    return k


@pytest.mark.parametrize("stage,kills", [("train", 2), ("reflow", 1), ("distill", 1)])
def test_killed_run_resumes_to_the_uninterrupted_result(cli, tmp_path, inputs, stage, kills):
    argv, uninterrupted = inputs[stage]
    rng = random.Random(f"kill-{stage}")
    out = tmp_path / "killed"
    for _ in range(kills):   # the second kill hits a run that was itself resumed
        kill_at_random_step(argv + (["--resume"] if out.exists() else []), out, rng)
        assert assert_no_torn_files(out) > 0
        assert_log_continuous(out)
    code, _, err = cli(*argv, "--out", out, "--resume")
    assert code == 0, err
    whole = uninterrupted(tmp_path / "whole")

    ran, ref = Checkpoint(out), Checkpoint(whole)
    assert ran.config["train"] == ref.config["train"] and ran.config["model"] == ref.config["model"]
    assert ran.complete and ran.config["steps_done"] == STEPS
    for name in ("model.safetensors", "ema.safetensors"):
        assert max_weight_diff(out / name, whole / name) <= 1e-6, name
    assert assert_log_continuous(out) == assert_log_continuous(whole)
    for a, b in zip(log_records(out), log_records(whole)):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-9), a["step"]
    assert_no_torn_files(out)


# ------------------------------------------------------------------------- numerical faults
class NaNAt(PairSource):
    """Clean pairs, except one NaN in global batch ``index``."""

    def __init__(self, inner: PairSource, index: int | None):
        self.inner, self.index, self.shape = inner, index, inner.shape

    def batch(self, index, size):
        x0, x1 = self.inner.batch(index, size)
        if index == self.index:
            x1 = x1.clone()
            x1[0, 0] = float("nan")
        return x0, x1


def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_snapshot(tmp_path):
    model_cfg = default_model_config((2,), **TINY_MODEL)
    cfg = TrainConfig(train_steps=60, batch_size=64, save_every=10, log_every=5)
    base = RunCard(stage="train", model=model_cfg, data={"name": "moons"}, shape=[2],
                   train=cfg.to_json())
    clean = IndependentPairs(load_dataset({"name": "moons"}), cfg.seed)
    with pytest.raises(TrainingDiverged) as info:
        fit(build_model(model_cfg), NaNAt(clean, index=36), cfg, tmp_path, base)
    assert info.value.step == 37 and "at step 37" in str(info.value)
    assert "step-00000030" in str(info.value)
    snap = latest_snapshot(tmp_path)
    assert snap.name == "step-00000030"
    state = load_snapshot(snap)
    assert all(torch.isfinite(v).all() for part in ("model", "ema") for v in state[part].values())
    ck = Checkpoint(tmp_path)
    assert ck.config["steps_done"] == 30 and not ck.complete
    assert all(torch.isfinite(p).all() for p in ck.load_model(ema=False).parameters())
    assert assert_log_continuous(tmp_path)[-1] == 35   # the window with the NaN is not logged
    assert_no_torn_files(tmp_path)
    # the kept snapshot is a working resume point
    summary = fit(build_model(model_cfg), NaNAt(clean, index=None), cfg, tmp_path, base,
                  resume=True)
    assert summary["start_step"] == 30 and summary["end_step"] == 60
    assert assert_log_continuous(tmp_path)[-1] == 60


def test_cli_divergence_exits_3_naming_the_step(cli, tmp_path, monkeypatch):
    """A loss that turns infinite at its 8th evaluation (an out-of-range lr is refused at
    parse time now, so divergence is forced through the objective)."""
    from rectflow.objectives.flow import FlowMatching
    real, calls = FlowMatching.loss, []

    def exploding(self, *a, **k):
        calls.append(1)
        loss = real(self, *a, **k)
        return loss * float("inf") if len(calls) >= 8 else loss
    monkeypatch.setattr(FlowMatching, "loss", exploding)
    data = point_cloud(tmp_path / "pts.npy")
    out = tmp_path / "run"
    code, _, err = cli("train", "--data", data, "--out", out, "--lr", "1e-3", "--warmup", 0,
                       "--train-steps", 20, "--batch-size", 64, "--save-every", 1, "--log-every", 1,
                       *sum((["--" + k, v] for k, v in TINY_MODEL.items()), []))
    assert code == 3 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    m = re.match(r"rectflow: error: loss became (nan|inf|-inf) at step (\d+); "
                 r"the last good checkpoint \(step-(\d+)\) is kept in ", last)
    assert m, last
    step, kept = int(m.group(2)), int(m.group(3))
    assert kept == step - 1 and latest_snapshot(out).name == f"step-{kept:08d}"
    for f in ("model.safetensors", "ema.safetensors"):
        assert all(torch.isfinite(v).all() for v in load_tensors(latest_snapshot(out) / f).values())
    assert step == 8 and not (out / "eval.json").exists()   # no evaluation of a diverged run


def test_sigint_saves_the_current_step_and_resume_ends_equal(tmp_path):
    """Ctrl-C in the middle of training (a real SIGINT to a real process): a snapshot of the
    step it stopped at, the exact resume command printed, and the resumed run ends with the
    same weights as one that was never interrupted."""
    data = point_cloud(tmp_path / "pts.npy")
    argv = ["train", "--data", data, "--train-steps", 400, "--batch-size", 64, "--lr", "1e-2",
            "--save-every", 1000, "--log-every", 5, "--no-eval",
            *sum((["--" + k, v] for k, v in TINY_MODEL.items()), [])]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert subprocess.run(cli_cmd(*argv, "--out", ref), env=subprocess_env()).returncode == 0
    proc = subprocess.Popen(cli_cmd(*argv, "--out", out), env=subprocess_env(),
                            stderr=subprocess.PIPE, text=True)
    log = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)   # polling a file the child writes, not a sleep as synchronisation
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    m = re.search(r"at step (\d+); .*rerun: rectflow (.*)$", line)
    assert m and m.group(2).endswith("--resume"), line
    step = int(m.group(1))
    assert 15 <= step < 400 and latest_snapshot(out).name == f"step-{step:08d}"
    resumed = subprocess.run(cli_cmd(*shlex.split(m.group(2))), env=subprocess_env(),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for f in ("model.safetensors", "ema.safetensors"):
        assert max_weight_diff(ref / f, out / f) < 1e-6
