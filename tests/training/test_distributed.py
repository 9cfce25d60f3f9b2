"""train, reflow and distill under ``torchrun --nproc_per_node 2`` on CPU (gloo), for real.

Each command is launched as users launch it; the checks are the ones a broken launch fails:
the two processes must share one global batch (one log, written once, snapshots saying
``world: 2``, weights equal to a 1-process run up to float reduction order), the result must
load, and tables and progress must be printed once, not once per process. (Coupling under two
processes, byte-identical to one, is tested with ``couple`` itself.)
"""
import json
import subprocess

import pytest
import torch

from rectflow.stages import train as stages
from rectflow.records.checkpoint import Checkpoint, latest_snapshot
from rectflow.training.loop import TrainConfig

from support import (TINY_MODEL, assert_log_continuous, assert_no_torn_files, flags, log_records,
                     max_weight_diff, point_cloud, small_pairs, subprocess_env, tiny_checkpoint,
                     torchrun_cmd)

TRAIN = dict(train_steps=80, batch_size=256, lr=1e-2, warmup=0, save_every=40, log_every=10)


def launch(tmp_path, *argv) -> subprocess.CompletedProcess:
    r = subprocess.run(torchrun_cmd(*argv), cwd=tmp_path, env=subprocess_env(),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return r


def assert_printed_once(r: subprocess.CompletedProcess, steps: int) -> None:
    """The tables' title and one finished progress bar appear once: rank 0 prints, rank 1
    stays quiet."""
    first = r.stdout.strip().splitlines()[0]
    assert r.stdout.count(first) == 1, r.stdout
    bars = [ln for ln in r.stderr.splitlines() if f"{steps}/{steps}" in ln]
    assert len(bars) == 1, r.stderr


def assert_two_process_run(out, steps: int) -> Checkpoint:
    ck = Checkpoint(out)
    assert ck.complete and ck.config["steps_done"] == steps
    model = ck.load_model()
    assert model(torch.zeros(3, 2), torch.zeros(3)).shape == (3, 2)
    meta = json.loads((latest_snapshot(out) / "meta.json").read_text())
    assert meta["world"] == 2, "each process trained alone instead of sharing the batch"
    assert assert_log_continuous(out)[-1] == steps
    assert assert_no_torn_files(out) > 0
    return ck


@pytest.fixture(scope="module")
def teacher_and_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    data = point_cloud(root / "pts.npy")
    teacher = tiny_checkpoint(root / "teacher", data)
    return teacher, small_pairs(teacher, root / "pairs", n=2048, shard_size=512)


def test_train_on_two_processes_learns_and_matches_one_process(tmp_path):
    data = point_cloud(tmp_path / "pts.npy")
    r = launch(tmp_path, "train", "--data", data, "--out", "rf2p", "--hidden", 32, "--depth", 2,
               *flags(**TRAIN, time_dist="uniform"))   # as TrainConfig(**TRAIN) below
    assert_printed_once(r, TRAIN["train_steps"])
    assert_two_process_run(tmp_path / "rf2p", TRAIN["train_steps"])
    losses = [rec["loss"] for rec in log_records(tmp_path / "rf2p")]
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses
    # the same global batches on one process: equal up to the order of float reductions
    stages.train(tmp_path / "rf1p", str(data), model=TINY_MODEL, options=TrainConfig(**TRAIN),
                 evaluate=False)
    for name in ("model.safetensors", "ema.safetensors"):
        assert max_weight_diff(tmp_path / "rf1p" / name, tmp_path / "rf2p" / name) < 1e-5


@pytest.mark.parametrize("stage", ["reflow", "distill"])
def test_reflow_and_distill_on_two_processes(tmp_path, teacher_and_pairs, stage):
    teacher, pairs = teacher_and_pairs
    steps = 40
    r = launch(tmp_path, stage, "--pairs", pairs, "--out", stage,
               *flags(train_steps=steps, batch_size=128, save_every=20, log_every=10))
    assert_printed_once(r, steps)
    ck = assert_two_process_run(tmp_path / stage, steps)
    assert ck.config["stage"] == stage
    assert ck.config["model"] == Checkpoint(teacher).config["model"]
    assert (tmp_path / stage / ck.config["parent"]["pairs"]).resolve() == pairs.resolve()
