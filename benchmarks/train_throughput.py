"""Training throughput of rectflow's loop against a bare PyTorch loop, in the same process.

Both train the same MLP (3 hidden layers of 256, SiLU, time embedding) with Adam at batch 2048
on moons. The bare loop does forward + backward + step on a fixed batch and nothing else;
rectflow's loop also draws data, noise and t per step, updates the EMA and logs, through
Accelerate. The two alternate for ``--rounds`` rounds in one process, the order swapped every
round; printed: each round's samples/s and ratio, then the median ratio with its min-max and
interquartile range (target >= 0.9).

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py [--steps 300] [--rounds 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from rounds import alternate, spread

from rectflow import smoke
from rectflow.training.pairs import make_source
from rectflow.data import load_dataset
from rectflow.models import build_model, default_model_config
from rectflow.core.path import interpolate
from rectflow.records import RunCard
from rectflow.training.loop import TrainConfig, fit

BATCH = 2048
# rectflow's loop is timed between its logs at step WARM and WARM + steps
WARM, EVERY = (1, 1) if smoke.on() else (20, 10)   # smoke: 4 steps at most in all


def bare_loop(steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(default_model_config((2,)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x0, x1, t = torch.randn(BATCH, 2), torch.randn(BATCH, 2), torch.rand(BATCH)
    xt, target = interpolate(x0, x1, t), x1 - x0
    for i in range(steps + 20):
        if i == 20:
            start = time.perf_counter()
        loss = (model(xt, t) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * BATCH / (time.perf_counter() - start)


def rectflow_loop(steps: int) -> float:
    model_cfg = default_model_config((2,))
    model = build_model(model_cfg)
    source = make_source(load_dataset({"name": "moons"}), "independent", 0)
    # the first mark is at step WARM (after warm-up), the last at the end
    cfg = TrainConfig(train_steps=steps + WARM, batch_size=BATCH, save_every=10**9, log_every=EVERY)
    card = RunCard(stage="train", data={"name": "moons"}, shape=[2], model=model_cfg,
                   train=cfg.to_json())
    marks = {}

    def cb(e):
        if e.get("event") == "step":
            marks.setdefault(e["step"], time.perf_counter())
    with tempfile.TemporaryDirectory() as d:
        fit(model, source, cfg, d, card, callback=cb)
    first, last = marks[WARM], marks[steps + WARM]
    return steps * BATCH / (last - first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
          f"{args.steps} timed steps, {args.rounds} alternating rounds")
    results = alternate(lambda: bare_loop(args.steps), lambda: rectflow_loop(args.steps),
                        args.rounds)
    for r, (b, o) in enumerate(results):
        print(f"round {r} ({'bare first' if r % 2 == 0 else 'rectflow first'}): bare "
              f"{b:10,.0f} samples/s, rectflow {o:10,.0f} samples/s, ratio {o / b:.3f}")
    print(f"ratio rectflow / bare: {spread([o / b for b, o in results])}   (target >= 0.90)")


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--steps", "2", "--rounds", "1"]]


if __name__ == "__main__":
    main()
