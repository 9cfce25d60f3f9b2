"""Throughput and memory of `rectflow couple` against the model's own forward speed.

1. Ratio: pairs/s of couple (Euler, N steps, every pair's path metrics on) divided by the raw
   forward throughput of the same model in ``torch.inference_mode`` over N, on calls of
   ``eval_chunk`` rows (what couple passes the model per call), measured in the same
   process, by wall time and by this process's CPU time. 1.0 means couple costs nothing
   beyond the N model calls a pair needs; the target is >= 0.9. The forward measurement and
   the couple run alternate for ``--rounds`` rounds, the order swapped every round; printed:
   the median ratio with its min-max and interquartile range.
2. Memory: peak RSS of a fresh process writing 1,000,000 2-D pairs over that of one writing
   100,000 (``resource.getrusage`` in the child); flat streaming keeps it near 1.0 (target
   < 1.5).

    OMP_NUM_THREADS=1 python benchmarks/couple_throughput.py [--n 100000] [--steps 10]
        [--rounds 5] [--threads 1]

The teacher is the default 2-D MLP (what ``rectflow train --data moons`` builds), randomly
initialised and saved to a temporary checkpoint folder; speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rounds import alternate, spread

from rectflow.records import checkpoint as ckpt
from rectflow.stages import train as stages
from rectflow.models import build_model, default_model_config
from rectflow.stages.couple import CoupleConfig
from rectflow.records import RunCard
from rectflow.training.loop import TrainConfig


def make_teacher(folder: Path) -> Path:
    cfg = default_model_config((2,))
    torch.manual_seed(0)
    sd = {k: v.float() for k, v in build_model(cfg).state_dict().items()}
    card = RunCard(stage="train", data={"name": "moons"}, shape=[2], model=cfg,
                   train=TrainConfig().to_json(), complete=True)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model", "ema"):
        ckpt.save_tensors(folder / f"{name}.safetensors", sd, card.weights_metadata())
    card.write(folder)
    return folder


class Clock:
    """Wall time and this process's CPU time. On a shared machine the wall-clock rate swings
    with other people's jobs; the CPU-time rate measures the work this process did."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def forward_rates(teacher: Path, batch: int, seconds: float = 2.0) -> tuple[float, float]:
    """Rows/s of plain ``model(x, t)`` calls in inference mode: (per wall s, per CPU s)."""
    model = ckpt.Checkpoint(teacher).load_model()
    x, t = torch.randn(batch, 2), torch.rand(batch)
    with torch.inference_mode():
        model(x, t)   # warm-up
        calls = 0
        with Clock() as c:
            while time.perf_counter() - c.wall < seconds:
                model(x, t)
                calls += 1
    return calls * batch / c.wall, calls * batch / c.cpu


def couple_rates(teacher: Path, out: Path, cfg: CoupleConfig) -> tuple[float, float]:
    """Pairs/s of the whole ``stages.couple`` call: (per wall s, per CPU s)."""
    with Clock() as c:
        stages.couple(teacher, out, cfg)
    return cfg.n / c.wall, cfg.n / c.cpu


def rss_child(n: int, threads: int) -> None:
    """Write n pairs in this fresh process; print its peak RSS in MiB as JSON."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        teacher = make_teacher(Path(tmp) / "teacher")
        stages.couple(teacher, Path(tmp) / "pairs", CoupleConfig(n=n, solver="euler", steps=1))
    print(json.dumps({"n": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(n: int, threads: int) -> float:
    r = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--threads", str(threads)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="pairs per throughput round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="Euler steps N")
    ap.add_argument("--batch-size", type=int, default=CoupleConfig.batch_size)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of a forward timing")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child is not None:
        return rss_child(args.rss_child, args.threads)
    torch.set_num_threads(args.threads)
    ratios = {"wall": [], "cpu": []}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = make_teacher(Path(tmp) / "teacher")
        cfg = CoupleConfig(n=args.n, solver="euler", steps=args.steps, batch_size=args.batch_size)
        runs = iter(range(args.rounds))
        # couple calls the model on chunks of eval_chunk rows: time the forward at that size
        results = alternate(lambda: forward_rates(teacher, cfg.eval_chunk, args.seconds),
                            lambda: couple_rates(teacher, Path(tmp) / f"pairs-{next(runs)}", cfg),
                            args.rounds)
    for r, (fwd, pairs) in enumerate(results):
        for i, clock in enumerate(ratios):
            ideal = fwd[i] / args.steps
            ratios[clock].append(pairs[i] / ideal)
            print(f"round {r} ({'forward first' if r % 2 == 0 else 'couple first'}) {clock:>4}: "
                  f"forward {fwd[i]:,.0f} rows/s (chunk {cfg.eval_chunk}) -> ideal "
                  f"{ideal:,.0f} pairs/s at {args.steps} Euler steps; couple {pairs[i]:,.0f} "
                  f"pairs/s (n={args.n:,}); ratio {ratios[clock][-1]:.3f}")
    for clock, rs in ratios.items():
        print(f"ratio couple / (forward / N) by {clock} time: {spread(rs)}   (target >= 0.9)")
    small, large = peak_rss(100_000, args.threads), peak_rss(1_000_000, args.threads)
    print(f"peak RSS: 100,000 pairs {small:.0f} MiB, 1,000,000 pairs {large:.0f} MiB, "
          f"ratio {large / small:.3f}   (target < 1.5)")


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--n", "256", "--rounds", "1", "--steps", "2", "--seconds", "0.2"]]


if __name__ == "__main__":
    main()
