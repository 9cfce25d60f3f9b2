"""How many CPU threads rectflow computes with: one policy for torch and the BLAS libraries.

Left alone, torch's OpenMP pool, numpy's OpenBLAS and scipy's own OpenBLAS each start one
thread per core, and processes of a distributed run each do so again. :func:`configure` sets
them all to one number, once: the cores this process may use (its CPU affinity and cgroup
quota), divided among the processes of a distributed run on this machine, unless
``OMP_NUM_THREADS`` is set or a number is given (``--threads``, ``threads=``).

That number is only the ceiling. On a machine busy with other jobs fewer threads can be much
faster (measured on a 2-core machine at load ~3: moons trained at 5.2k samples/s with 2
threads and 85.6k with 1), so a training run left to the default measures instead of
guessing: :class:`Tuner` times the run's own first steps at 1 thread and at the ceiling,
keeps the faster, re-checks now and then, and says in one line what it chose and why
(benchmarks/THREADS.md). A number given by the user, or ``OMP_NUM_THREADS``, is used as is:
the thread count can change the order of float reductions, so a run that must repeat bit for
bit fixes it.

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
import time
from pathlib import Path
from typing import Callable

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


def _set(n: int) -> str:
    """Set torch and every BLAS (loaded now or later) to ``n`` threads; says how BLAS was set."""
    import torch

    for var in ENV_VARS:   # read by libraries that load after this point
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n)   # applies now and stays (not used as a context)
        return "BLAS via threadpoolctl"
    except ImportError:
        return ("BLAS via openblas_set_num_threads" if _blas_without_threadpoolctl(n)
                else "no BLAS loaded yet")


def configure(n: int | None = None) -> str:
    """Use ``n`` CPU threads (default :func:`default_threads`, then measured by a training
    run's :class:`Tuner`) in torch and every BLAS; returns the one line that says what was
    set. Call again to change it."""
    if n is not None:
        from ..options import THREADS
        n = THREADS.check(n)   # a whole number in 1..max_threads(), or an OptionError
    why, auto = "given", False
    if n is None:
        n, why = default_threads()
        auto = why != "OMP_NUM_THREADS" and "processes" not in why
    blas = _set(n)
    line = f"threads: {n} ({why}; torch and {blas}; --threads to change)"
    if auto and n > 1:   # a training run's Tuner then says which it kept
        line = (f"threads: {n} for now ({why}; torch and {blas}); training measures 1 and {n} "
                "on its first steps and keeps the faster (--threads to fix)")
    _state.update(threads=n, ceiling=n, why=why, pending=line, auto=auto and n > 1)
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


# ------------------------------------------------------------------------ measured choice
class Tuner:
    """Picks the faster of some thread counts by timing the work it runs (a training step).

    It probes each candidate in turn for up to ``probe`` units and keeps the one with the
    shortest mean time per unit; a candidate stops being probed as soon as its time exceeds
    the best finished candidate's whole probe (it can no longer win), so a slow setting on a
    busy machine costs about one unit. The very first unit (one-off start-up costs) is not
    counted. ``recheck`` seconds after a choice it probes again, the chosen one first.
    ``say`` receives the line that explains a choice (only when it changes)."""

    def __init__(self, candidates, probe: int = 6, recheck: float = 30.0,
                 say: Callable[[str], None] | None = None, timer=time.perf_counter,
                 setter: Callable[[int], object] = _set):
        self.candidates = list(dict.fromkeys(candidates))
        self.probe, self.recheck, self.say = probe, recheck, say
        self.timer, self.setter = timer, setter
        self.chosen: int | None = None
        self.per_unit: dict[int, float] = {}
        self.stopped: dict[int, int] = {}   # candidate -> units run when it was cut short
        self._queue: list[int] = []
        self._warm = True
        self._start_probe(self.candidates)

    def _start_probe(self, order) -> None:
        self._queue, self.per_unit, self.stopped = list(order), {}, {}
        self._next()

    def _next(self) -> None:
        self._current, self._count, self._elapsed = self._queue.pop(0), 0, 0.0
        self.setter(self._current)

    def run(self, fn):
        """``fn()``, timed while probing; returns what ``fn`` returns."""
        if self._current is None and self.timer() - self._decided > self.recheck:
            self._start_probe([self.chosen] + [c for c in self.candidates if c != self.chosen])
        if self._current is None:
            return fn()
        t0 = self.timer()
        out = fn()
        self._record(self.timer() - t0)
        return out

    def _record(self, dt: float) -> None:
        if self._warm:
            self._warm = False
            return
        self._count += 1
        self._elapsed += dt
        best = min((t * self.probe for t in self.per_unit.values()), default=None)
        cut = self._count < self.probe and best is not None and self._elapsed > best
        if self._count < self.probe and not cut:
            return
        self.per_unit[self._current] = self._elapsed / self._count
        if cut:
            self.stopped[self._current] = self._count
        if self._queue:
            self._next()
        else:
            self._decide()

    def _decide(self) -> None:
        best = min(self.per_unit, key=self.per_unit.get)
        changed, self.chosen, self._current = best != self.chosen, best, None
        self._decided = self.timer()
        self.setter(best)
        _state["threads"] = best
        if changed and self.say is not None:
            self.say(self.explain())

    def explain(self) -> str:
        def one(c: int) -> str:
            cut = f" (stopped after {self.stopped[c]})" if c in self.stopped else ""
            return f"{c} thread{'s' if c != 1 else ''} {self.per_unit[c] * 1e3:.3g} ms/step{cut}"
        order = sorted(self.per_unit, key=self.per_unit.get)
        return (f"threads: {self.chosen}, the faster here (measured on this run's steps: "
                f"{', '.join(map(one, order))}; re-checked every {self.recheck:g} s; "
                "--threads N to fix)")


def tuner(world: int = 1, say: Callable[[str], None] | None = None) -> Tuner | None:
    """A :class:`Tuner` between 1 thread and the configured number when the number is the
    default policy's (not given, no ``OMP_NUM_THREADS``) and this is a single process run;
    else None (the number stays as it is)."""
    ensure()
    if world != 1 or not _state.get("auto"):
        return None
    return Tuner([1, _state["ceiling"]], say=say)


def candidates() -> list[int]:
    """The thread counts a training run may compute with: 1 and the ceiling when it
    measures (:func:`tuner`), else the configured number (configuring the default first)."""
    ensure()
    return sorted({1, _state["ceiling"]}) if _state.get("auto") else [_state["threads"]]


def timed(tuner_or_none: Tuner | None, fn):
    """``fn()`` through the tuner when there is one."""
    return fn() if tuner_or_none is None else tuner_or_none.run(fn)
