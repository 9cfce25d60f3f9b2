"""Wall time of a default ``rectflow train`` against ``--threads 1``, idle and under load.

Runs ``rectflow train --data moons --train-steps 300`` (every other option default, so it
evaluates when it ends) in a child process: with the default thread policy, with
``--threads 1`` and with ``--threads <cores>`` (the old fixed default), first as the machine
is, then while two busy CPU-bound processes (``while True: pass``, each ended after at most
``--busy-limit`` seconds, and killed when the measurement ends) share the cores. Prints each
wall time, the ratios default / ``--threads 1`` and default / ``--threads <cores>``, the load
average, and the line in which the run said which thread count it chose. benchmarks/THREADS.md
holds a measured table.

    python benchmarks/threads_under_load.py [--steps 300] [--repeats 1] [--skip-old-loaded]
    RECTFLOW_SMOKE=1 python benchmarks/threads_under_load.py     # or --tiny: seconds, not minutes
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = "import time\nend = time.time() + {limit}\nwhile time.time() < end: pass\n"


def busy(n: int, limit: float) -> list[subprocess.Popen]:
    """``n`` CPU-bound processes that end by themselves after ``limit`` seconds."""
    return [subprocess.Popen([sys.executable, "-c", BUSY.format(limit=limit)])
            for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def train(out: Path, steps: int, threads: int | None, extra: list[str]) -> tuple[float, str]:
    """Wall seconds of one run and its thread line(s)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS",
                                                             "MKL_NUM_THREADS")}
    env["COLUMNS"] = "250"
    cmd = [sys.executable, "-m", "rectflow.cli.main", "train", "--data", "moons",
           "--train-steps", str(steps), "--out", str(out), "--overwrite", *extra]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stderr[-2000:]}")
    said = [ln for ln in run.stdout.splitlines() if ln.startswith("threads:")]
    return wall, " | ".join(said)


def measure(label: str, work: Path, steps: int, settings, repeats: int,
            extra: list[str]) -> dict:
    times = {}
    for name, threads in settings:
        runs = [train(work / f"{label}-{name}", steps, threads, extra) for _ in range(repeats)]
        walls = sorted(w for w, _ in runs)
        times[name] = (walls[len(walls) // 2], runs[-1][1])
        print(f"  {label:7s} {name:12s} {times[name][0]:7.1f} s   load {os.getloadavg()[0]:.1f}"
              f"   {runs[-1][1]}", flush=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=1, help="Runs per setting (median shown).")
    ap.add_argument("--busy", type=int, default=2, help="Busy processes of the loaded case.")
    ap.add_argument("--busy-limit", type=float, default=1800.0,
                    help="Seconds after which each busy process ends by itself.")
    ap.add_argument("--skip-old-loaded", action="store_true",
                    help="Do not run --threads <cores> under load (it is the slow one).")
    ap.add_argument("--tiny", action="store_true", help="A seconds-long smoke run.")
    args = ap.parse_args()
    extra: list[str] = []
    if args.tiny or os.environ.get("RECTFLOW_SMOKE") == "1":
        args.steps, args.repeats, args.busy_limit = 20, 1, 120.0
        extra = ["--no-eval", "--batch-size", "256"]
    cores = len(os.sched_getaffinity(0))
    default, one, old = ("default", None), ("--threads 1", 1), (f"--threads {cores}", cores)
    print(f"rectflow train --data moons --train-steps {args.steps} {' '.join(extra)}"
          f"  ({cores} cores, median of {args.repeats})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        idle = measure("idle", work, args.steps, [default, one, old], args.repeats, extra)
        procs = busy(args.busy, args.busy_limit)
        try:
            loaded = measure(f"{args.busy} busy", work, args.steps,
                             [default, one] + ([] if args.skip_old_loaded else [old]),
                             args.repeats, extra)
        finally:
            stop(procs)
    print("\ncase      default / --threads 1   default / " + old[0])
    for label, t in (("idle", idle), (f"{args.busy} busy", loaded)):
        vs_old = f"{t['default'][0] / t[old[0]][0]:.2f}" if old[0] in t else "-"
        print(f"{label:9s} {t['default'][0] / t[one[0]][0]:21.2f}   {vs_old:>12s}")


if __name__ == "__main__":
    main()


# its tiny run under RECTFLOW_SMOKE=1 (tests/benchmarks/test_bench_smoke.py)
SMOKE_RUNS = [["--tiny"]]
