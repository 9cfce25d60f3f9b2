"""How many CPU threads rectflow computes with: one policy for torch and the BLAS libraries.

Left alone, torch's OpenMP pool, numpy's OpenBLAS and scipy's own OpenBLAS each start one
thread per core, and processes of a distributed run each do so again. :func:`configure` sets
them all to one number, once: the cores this process may use (its CPU affinity and cgroup
quota), divided among the processes of a distributed run on this machine, unless
``OMP_NUM_THREADS`` is set or a number is given (``--threads``). The number does not follow
the machine's momentary load, so the same command computes the same way every time; on a
machine busy with other jobs fewer threads can be much faster (measured on a 2-core machine at
load ~3: ``rectflow train --data moons --train-steps 500`` took 27 s with ``--threads 1`` and
134-170 s with 2), and the line rectflow prints at start says what it chose.

Nothing changes at import. A stage calls :func:`ensure` when it runs (a no-op once
configured); ``configure(n)`` sets a number explicitly. Libraries already loaded are set
through threadpoolctl (or, without it, OpenBLAS's own ``openblas_set_num_threads``); for
libraries loaded later (scipy's OpenBLAS is loaded on first use) the usual environment
variables are set too, since they are read when a library loads.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_state: dict = {}


def machine_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):   # no cgroup v2 limit to read
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    return max(1, cores)


def max_threads() -> int:
    """The most threads rectflow starts (``--threads``' bound): more makes OpenMP and
    OpenBLAS fail to create their pools (a crash, or an allocation failure)."""
    from ..options import THREADS
    return int(THREADS.hi)


def _bounded(n: int, source: str) -> int:
    if n > max_threads():
        from ..errors import UserError
        raise UserError(f"{source}={n} is more threads than rectflow starts (at most "
                        f"{max_threads()}; this machine has {machine_cores()} cores)")
    return n


def default_threads() -> tuple[int, str]:
    """The number :func:`configure` uses when none is given, and why. ``OMP_NUM_THREADS``
    counts when it is a whole number >= 1 (other forms, such as OpenMP's nested lists, are
    left to the policy); one above :func:`max_threads` is refused."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return _bounded(int(env), "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    cores = machine_cores()
    # the machine's cores, not its momentary load: a thread count that followed the load
    # would make the same command compute with different reductions from run to run
    idle, why = cores, f"{cores} cores"
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    procs = min(int(local), 1 << 20) if local.isdigit() and int(local) >= 1 else 1
    if procs > 1:
        return max(1, idle // procs), f"{why} / {procs} processes"
    return idle, why


def _blas_without_threadpoolctl(n: int) -> list[str]:
    """Set every loaded OpenBLAS (found in this process's memory map) to ``n`` threads."""
    done = []
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return done
    libs = sorted({line.split()[-1] for line in maps.splitlines()
                   if "openblas" in line.rsplit("/", 1)[-1].lower() and ".so" in line})
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_",
                     "openblas_set_num_threads"):
            fn = getattr(handle, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done.append(Path(lib).name)
                break
    return done


def configure(n: int | None = None) -> str:
    """Use ``n`` CPU threads (default :func:`default_threads`) in torch and every BLAS; returns
    the one line that says what was set. Call again to change it."""
    import torch

    if n is not None:
        from ..options import THREADS
        n = THREADS.check(n)   # a whole number in 1..max_threads(), or an OptionError
    why = "given"
    if n is None:
        n, why = default_threads()
    for var in ENV_VARS:   # read by libraries that load after this point
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n)   # applies now and stays (not used as a context)
        blas = "BLAS via threadpoolctl"
    except ImportError:
        blas = ("BLAS via openblas_set_num_threads" if _blas_without_threadpoolctl(n)
                else "no BLAS loaded yet")
    line = f"threads: {n} ({why}; torch and {blas}; --threads to change)"
    _state.update(threads=n, why=why, pending=line)
    return line


def take_note() -> str | None:
    """The line of the last :func:`configure` if nobody has shown it yet (then never again)."""
    return _state.pop("pending", None)


def configured() -> int | None:
    """The number set by :func:`configure` in this process, or None."""
    return _state.get("threads")


def ensure(callback=None) -> int:
    """Configure the default policy unless it was configured already, and say what was set
    through ``callback`` as ``{"event": "note", "text": ...}`` unless that was said already.
    Returns the thread count."""
    if "threads" not in _state:
        configure()
    if callback is not None and "pending" in _state:
        callback({"event": "note", "text": take_note()})
    return _state["threads"]
