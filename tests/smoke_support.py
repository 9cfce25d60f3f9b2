"""Running documented commands end to end on tiny budgets (RECTFLOW_SMOKE=1, rectflow.smoke):
the benchmark scripts (test_bench_smoke.py) and the README's commands
(test_readme_commands.py). Independent jobs run two at a time (the CI machine has 2 cores;
each job uses one thread)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2


def smoke_env() -> dict:
    return {**os.environ, "RECTFLOW_SMOKE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "120",
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``argv`` with this interpreter in place of ``python``, in ``cwd``, under smoke budgets."""
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    return subprocess.run(argv, cwd=cwd, env=smoke_env(), capture_output=True, text=True,
                          timeout=timeout)


def failure(what: str, proc: subprocess.CompletedProcess) -> str:
    return (f"{what}: exit {proc.returncode}\n--- stdout (end)\n{proc.stdout[-1500:]}\n"
            f"--- stderr (end)\n{proc.stderr[-2500:]}")


def run_all(jobs: dict[str, Callable[[], list[str]]]) -> tuple[list[str], dict[str, float]]:
    """Run every job (a callable returning its failures), WORKERS at a time; returns all
    failures and each job's seconds (printed, for ``pytest -s``)."""
    def timed(item):
        name, job = item
        start = time.perf_counter()
        fails = job()
        return name, fails, time.perf_counter() - start

    failures, seconds = [], {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for name, fails, secs in pool.map(timed, jobs.items()):
            failures += fails
            seconds[name] = secs
            print(f"{name}: {secs:.1f} s{' FAILED' if fails else ''}")
    return failures, seconds
