"""Soak: couple 2,000,000 2-D pairs and watch memory and speed shard by shard.

A tiny MLP flow is trained on the fly (a few hundred steps on moons), then
``rectflow.stages.train.couple`` writes the pairs with a few Euler steps. On every ``shard`` event
the script prints the shard's throughput, the cumulative throughput, the current RSS and the
peak RSS of the process so far. Streaming keeps memory flat: at the end it prints the ratio of
the last shard's RSS to the first shard's (target: close to 1.0; a leak shows as growth with
the shard count), and checks the finished dataset reads back.

    python benchmarks/soak_couple.py [--n 2000000] [--shard-size 100000] [--steps 4]
                                     [--threads 1] [--keep DIR]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from rectflow.stages import train as stages
from rectflow.data.pairs import PairsDataset
from rectflow.stages.couple import CoupleConfig
from rectflow.training.loop import TrainConfig


def rss_mb() -> float:
    """Resident set size now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_mb()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ShardMeter:
    """Callback: one line per finished shard."""

    def __init__(self, shard_size: int, n: int):
        self.shard_size, self.n = shard_size, n
        self.t0 = self.t_last = time.perf_counter()
        self.rss: list[float] = []
        self.done = 0

    def __call__(self, event: dict) -> None:
        if event.get("event") != "shard":
            return
        now = time.perf_counter()
        count = min(self.shard_size, self.n - event["shard"] * self.shard_size)
        self.done += count
        self.rss.append(rss_mb())
        print(f"shard {event['shard']:3d}  {self.done:>9,} pairs  "
              f"{count / (now - self.t_last):>9,.0f} pairs/s (shard)  "
              f"{self.done / (now - self.t0):>9,.0f} pairs/s (total)  "
              f"RSS {self.rss[-1]:7.1f} MB  peak {peak_mb():7.1f} MB", flush=True)
        self.t_last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=4, help="Euler steps per pair")
    ap.add_argument("--batch-size", type=int, default=16_384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="write here and keep it (default: a temp folder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    root = args.keep or Path(tempfile.mkdtemp(prefix="rectflow-soak-"))
    try:
        t = time.perf_counter()
        teacher = stages.train(root / "rf1", "moons", model={"hidden": 64, "depth": 2},
                               options=TrainConfig(train_steps=300, batch_size=512, warmup=0, lr=3e-3,
                                                  save_every=300, log_every=100),
                               evaluate=False, overwrite=True)
        print(f"teacher: tiny MLP (hidden 64, depth 2) trained in {time.perf_counter() - t:.1f} s;"
              f" RSS {rss_mb():.1f} MB")
        cfg = CoupleConfig(n=args.n, solver="euler", steps=args.steps, shard_size=args.shard_size,
                           batch_size=args.batch_size)
        meter = ShardMeter(args.shard_size, args.n)
        before = rss_mb()
        t = time.perf_counter()
        manifest = stages.couple(teacher.path, root / "pairs", cfg, overwrite=True, callback=meter)
        seconds = time.perf_counter() - t
        pairs = PairsDataset(root / "pairs")
        pairs.verify()
        size = sum(p.stat().st_size for p in (root / "pairs").glob("pairs-*.safetensors"))
        print(f"\n{manifest.n:,} pairs in {len(manifest.shards)} shards, "
              f"{manifest.nfe} NFE per pair, {size / 2**20:.0f} MB on disk; "
              f"{seconds:.1f} s including the manifest and its OT reference "
              f"({manifest.n / seconds:,.0f} pairs/s overall)")
        print(f"RSS before couple {before:.1f} MB, first shard {meter.rss[0]:.1f} MB, last shard "
              f"{meter.rss[-1]:.1f} MB: ratio last/first {meter.rss[-1] / meter.rss[0]:.3f}, "
              f"growth {meter.rss[-1] - meter.rss[0]:+.1f} MB over {len(meter.rss) - 1} shards; "
              f"peak of the process {peak_mb():.1f} MB")
        print(f"straightness {manifest.metrics['straightness']:.4g}, transport cost "
              f"{manifest.metrics['transport_cost']:.4g}, OT cost "
              f"{manifest.metrics['ot_cost']:.4g} (first {manifest.metrics['ot_subsample']})")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--n", "256", "--shard-size", "128"]]


if __name__ == "__main__":
    main()
