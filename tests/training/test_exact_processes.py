"""One process or two, the same weights: train, reflow and distill, conditional, 100 steps.

The global batch of a step is drawn whole (pairs, times, label dropout, dropout masks) and cut
into per-process slices, so a run under ``torchrun --nproc_per_node 2`` must end where a run on
one process ends, up to the order of float reductions. Each stage is run as users run it (the
CLI, one process; torchrun, two) with options that exercise every shared piece: conditional
labels with label dropout, gradient clipping that bites and a short EMA; and the meanflow
objective, whose JVP runs through the DDP-wrapped model.

Tolerance: measured max |w1 - w2| over the model and EMA weights after 100 steps is
1.5e-7..4.8e-7 (benchmarks/EXACT_PROCESSES.md). 1e-5 leaves 20x headroom for other CPUs'
reduction order, and stays far below what a real mismatch moves: one Adam step at these
learning rates moves a weight by ~1e-3..1e-2, so one differing label, time or row fails it.
Meanflow runs 20 steps: its adaptive loss weight and zero-started interval input amplify
reduction-order noise about 10x per 30 steps (4.8e-7 at 20, 5e-6 at 50, 1e-3 at 100, while
its first steps agree to 1e-8), which is chaos, not a mismatch.
"""
import subprocess

import pytest

from rectflow.options import CoupleConfig
from rectflow.stages import train as stages

from support import cli_cmd, max_weight_diff, subprocess_env, torchrun_cmd

TOL = 1e-5
STEPS = 100
COMMON = ["--batch-size", 64, "--log-every", 50,
          "--warmup", 0, "--grad-clip", 0.5, "--ema-decay", 0.9, "--no-eval"]
TRAIN = ["train", "--data", "8gaussians", "--conditional",
         "--hidden", 32, "--depth", 2, "--lr", 1e-2]


def run(cwd, cmd) -> None:
    r = subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]


def both(cwd, name: str, argv: list, steps: int = STEPS) -> tuple:
    """The run on one process (plain CLI) and on two (torchrun); returns the two folders."""
    common = ["--train-steps", steps, "--save-every", steps, *COMMON]
    run(cwd, cli_cmd(*argv, "--out", f"{name}-1", *common))
    run(cwd, torchrun_cmd(*argv, "--out", f"{name}-2", *common))
    return cwd / f"{name}-1", cwd / f"{name}-2"


def assert_same_weights(one, two) -> None:
    for f in ("model.safetensors", "ema.safetensors"):
        diff = max_weight_diff(one / f, two / f)
        assert diff <= TOL, f"{f}: 1 vs 2 processes differ by {diff:.3g}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The conditional train run on 1 and 2 processes; the 1-process one is the teacher of
    the shared pairs folder."""
    root = tmp_path_factory.mktemp("exact")
    one, two = both(root, "train", TRAIN)
    stages.couple(one, root / "pairs", CoupleConfig(n=512, solver="euler", steps=4,
                                                    shard_size=256, ot_subsample=50))
    return root, one, two


def test_train_conditional_same_on_two_processes(trained):
    _, one, two = trained
    assert_same_weights(one, two)


@pytest.mark.parametrize("argv, steps", [(["reflow"], STEPS), (["distill"], STEPS),
                                         (["reflow", "--objective", "meanflow"], 20)],
                         ids=["reflow", "distill", "reflow-meanflow"])
def test_reflow_and_distill_same_on_two_processes(trained, argv, steps, request):
    root = trained[0]
    one, two = both(root, request.node.callspec.id,
                    [argv[0], "--pairs", "pairs", "--lr", 3e-3, *argv[1:]], steps)
    assert_same_weights(one, two)
