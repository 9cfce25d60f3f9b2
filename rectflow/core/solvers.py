"""ODE solvers for dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data).

Every solver has one stateless signature, :func:`solve`, runs batched in torch on the device of
``x0`` (no numpy round-trip per step), counts function evaluations (NFE), and can report each
step to an ``observer(t, dt, z, v)`` — the state ``z`` at the start of the step and the velocity
``v`` evaluated there — so metrics stream without keeping the trajectory. ``record=True`` keeps
the states at every grid point instead.

Interval velocities. A velocity may also take the end of the step, ``velocity(x, t, t_end)``,
and say so with the attribute ``velocity.interval = True`` (a MeanFlow model's velocity does):
its value is then the average velocity over [t, t_end], and ``euler`` steps with it, so a
k-step Euler solve is the model's own k interval steps ``z' = z + (t_end - t) u(z, t, t_end)``
(the observer gets that u). Every other method, and ``velocity(x, t)``, use the instantaneous
velocity. :func:`chunked` keeps the attribute.

Extras. Conditioning rides beside the state as per-row tensors: ``solve(v, x0,
extras={"y": labels})`` calls ``v(x, t, y=labels_of_those_rows)``, so a guided or
class-conditional velocity (:class:`rectflow.core.guidance.Guided`) is solved like any other.
dopri5 passes each call the rows it still steps; :func:`chunked` pads extras with zeros.

Methods: ``euler`` (order 1), ``heun`` (2), ``rk4`` (4) on any increasing time grid from 0 to 1,
and ``dopri5``, adaptive Dormand-Prince 5(4) with ``rtol``/``atol``, which steps every sample
with its own step size (rows sit at different times; a model gets t of shape [B]), so a
sample's path and NFE do not depend on the batch it is solved in. Its observer receives ``t``
and ``dt`` as float64 tensors of shape [B], ``dt = 0`` for rows that did not step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import math
import numbers

import torch

from ..errors import SolverError

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Observer = Callable[[float, float, torch.Tensor, torch.Tensor], None]

FIXED = ("euler", "heun", "rk4")
METHODS = FIXED + ("dopri5",)
MAX_NFE = 20_000   # per sample, dopri5
MIN_RTOL = 1e-12


@dataclass
class Solution:
    """What a solve returns. NFE counts velocity evaluations per sample: for the fixed-grid
    methods the same for every sample (Euler 1, Heun 2, RK4 4 per step); for dopri5 the mean
    over samples (``nfe``), the largest (``nfe_max``) and each sample's (``nfe_per_sample``),
    rejected steps included."""

    x: torch.Tensor                      # the endpoint z1
    nfe: int | float                     # velocity evaluations per sample (mean for dopri5)
    times: list[float]                   # the grid used; [0.0, 1.0] for dopri5 (see row_times)
    trajectory: torch.Tensor | None = None  # [T, B, ...] when record=True
    nfe_max: int = 0                     # the most evaluations any sample needed
    nfe_per_sample: torch.Tensor | None = None   # [B] (dopri5)
    row_times: torch.Tensor | None = None  # [T, B] each sample's t at each record (dopri5)


def uniform_grid(steps: int) -> list[float]:
    if steps < 1:
        raise SolverError(f"steps must be >= 1, got {steps}")
    return [i / steps for i in range(steps + 1)]


def check_grid(grid: list[float]) -> list[float]:
    g = [float(t) for t in grid]
    if len(g) < 2 or g[0] != 0.0 or g[-1] != 1.0 or any(b <= a for a, b in zip(g, g[1:])):
        raise SolverError("a time grid must increase strictly from 0 to 1")
    return g


def chunked(velocity: Velocity, chunk: int) -> Velocity:
    """Evaluate ``velocity`` on fixed-size chunks of ``chunk`` rows, zero-padding the last.

    Matrix kernels may round differently for different batch sizes; always calling the model
    with the same number of rows makes each sample's result independent of how many samples
    are solved together, so stored pairs are byte-identical for any ``--batch-size``.
    """
    def pad(a: torch.Tensor, n: int) -> torch.Tensor:
        return torch.cat([a, a.new_zeros((chunk - n, *a.shape[1:]))]) if n < chunk else a

    def v(x: torch.Tensor, t: torch.Tensor, t_end: torch.Tensor | None = None,
          **extras: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, x.shape[0], chunk):
            n = x[i:i + chunk].shape[0]
            args = [pad(a[i:i + chunk], n) for a in (x, t, t_end) if a is not None]
            outs.append(velocity(*args, **{k: pad(e[i:i + chunk], n)
                                           for k, e in extras.items()})[:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    v.interval = is_interval(velocity)
    return v


def is_interval(velocity) -> bool:
    """Whether ``velocity`` also takes the step's end, ``velocity(x, t, t_end)``."""
    return bool(getattr(velocity, "interval", False))


def _fixed_step(method: str, f, z: torch.Tensor, t: float, dt: float, v0: torch.Tensor):
    if method == "euler":
        return z + dt * v0, 0
    if method == "heun":
        v1 = f(z + dt * v0, t + dt)
        return z + 0.5 * dt * (v0 + v1), 1
    k2 = f(z + 0.5 * dt * v0, t + 0.5 * dt)
    k3 = f(z + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = f(z + dt * k3, t + dt)
    return z + dt / 6 * (v0 + 2 * k2 + 2 * k3 + k4), 3


# Dormand-Prince 5(4) tableau
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]
_B5 = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]
_B4 = [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


def _rms_rows(x: torch.Tensor) -> torch.Tensor:
    """RMS norm of each row (sample): every sample meets the tolerance on its own."""
    return x.double().pow(2).flatten(1).mean(1).sqrt()


def _col(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row [n] tensor shaped to broadcast against ``like`` [n, ...]."""
    return h.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _initial_step(z, k1, rtol, atol) -> torch.Tensor:
    """First step size per row (Hairer, Norsett & Wanner, II.4), capped at 1."""
    scale = atol + rtol * z.abs()
    d0, d1 = _rms_rows(z / scale), _rms_rows(k1 / scale)
    h = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 0.01), 0.01 * d0 / d1)
    return h.clamp(max=1.0)


def _dopri5(velocity, z, rtol, atol, observer, record, max_nfe, extras):
    """Each row (sample) takes its own steps: rows sit at different times t [B], a row's step
    is accepted or rejected by its own error, and finished rows are no longer evaluated. A
    row's path therefore does not depend on the other rows of the batch."""
    b, dev = z.shape[0], z.device
    t = torch.zeros(b, dtype=torch.float64, device=dev)
    nfe = torch.ones(b, dtype=torch.long, device=dev)
    k1 = velocity(z, t.to(z.dtype), **extras).clone()   # clone: a model may return a view
    _check_finite(~torch.isfinite(k1.flatten(1)).all(1), t, "velocity at t = 0")
    z = z.clone()
    h = _initial_step(z, k1, rtol, atol)
    floor = 16 * torch.finfo(z.dtype).eps
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    states, row_times = ([z.clone()], [t.clone()]) if record else (None, None)
    while not bool(done.all()):
        idx = (~done).nonzero().squeeze(1)
        z0, t0 = z[idx], t[idx]
        ex = {k: e[idx] for k, e in extras.items()}
        hi = torch.minimum(h[idx], 1.0 - t0)
        hz = _col(hi, z0)
        ks = [k1[idx]]
        for i in range(1, 7):
            zi = z0 + hz * sum(a * k for a, k in zip(_A[i], ks) if a != 0)
            ks.append(velocity(zi, (t0 + _C[i] * hi).to(z.dtype), **ex))
        nfe[idx] += 6
        z5 = zi  # stage 7 is evaluated at the 5th-order solution (FSAL)
        err = hz * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks))
        e = _rms_rows(err / (atol + rtol * torch.maximum(z0.abs(), z5.abs())))
        _check_finite(~(torch.isfinite(e) & torch.isfinite(z5.flatten(1)).all(1)), t0, "state")
        ok = e <= 1.0
        factor = torch.where(e == 0, torch.full_like(e, 5.0), (0.9 * e.pow(-0.2)).clamp(0.2, 5.0))
        h[idx] = hi * factor
        _check_budget(idx, ok, h, t, nfe, floor, max_nfe)
        rows = idx[ok]
        if observer is not None and rows.numel():
            dt = torch.zeros(b, dtype=torch.float64, device=dev)
            dt[rows] = hi[ok]
            observer(t.clone(), dt, z, k1)
        t_new = t0[ok] + hi[ok]
        t[rows] = torch.where(t_new >= 1.0 - 1e-12, torch.ones_like(t_new), t_new)
        z[rows], k1[rows] = z5[ok], ks[6][ok]
        done[rows] = t[rows] >= 1.0
        if record:
            states.append(z.clone())
            row_times.append(t.clone())
    return Solution(z, float(nfe.double().mean()), [0.0, 1.0],
                    torch.stack(states) if record else None, nfe_max=int(nfe.max()),
                    nfe_per_sample=nfe, row_times=torch.stack(row_times) if record else None)


def _check_finite(bad: torch.Tensor, t: torch.Tensor, what: str) -> None:
    """Stop on rows (``bad``, a [n] mask) whose state or velocity is NaN/inf."""
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise SolverError(f"dopri5: the {what} became non-finite (nan/inf) for {int(bad.sum())} "
                          f"sample(s), first at t = {float(t[i]):.4g}; the velocity field "
                          "diverges there")


def _check_budget(idx, ok, h, t, nfe, floor, max_nfe) -> None:
    """A rejected row whose next step falls below ``floor``, or any row past ``max_nfe``."""
    small = ~ok & (h[idx] < floor)
    if bool(small.any()):
        i = int(idx[small][0])
        raise SolverError(f"dopri5: step size {float(h[i]):.3g} fell below the floor "
                          f"{floor:.3g} at t = {float(t[i]):.4g}; rtol/atol cannot be met in "
                          "this precision (loosen them or solve in float64)")
    over = nfe[idx] > max_nfe
    if bool(over.any()):
        i = int(idx[over][0])
        raise SolverError(f"dopri5 needed more than max_nfe={max_nfe} velocity evaluations for "
                          f"a sample (stopped at t = {float(t[i]):.4g}); loosen rtol/atol or "
                          "raise max_nfe")


def _check_args(method, steps, grid, rtol, atol, max_nfe) -> None:
    if method not in METHODS:
        raise SolverError(f"unknown solver {method!r}; choose from {', '.join(METHODS)}")
    if method == "dopri5":
        for name, v in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SolverError(f"{name} must be a finite number > 0, got {v!r}")
        if rtol < MIN_RTOL:
            raise SolverError(f"rtol must be >= {MIN_RTOL:g} (below it round-off dominates), "
                              f"got {rtol!r}")
        if not (isinstance(max_nfe, numbers.Integral) and max_nfe >= 1):
            raise SolverError(f"max_nfe must be a whole number >= 1, got {max_nfe!r}")
    elif grid is None and not (isinstance(steps, numbers.Integral) and steps >= 1):
        raise SolverError(f"steps must be a whole number >= 1, got {steps!r}")


@torch.inference_mode()
def solve(velocity: Velocity, x0: torch.Tensor, method: str = "euler", steps: int = 100,
          grid: list[float] | None = None, rtol: float = 1e-5, atol: float = 1e-5,
          observer: Observer | None = None, record: bool = False,
          max_nfe: int = MAX_NFE, extras: dict[str, torch.Tensor] | None = None) -> Solution:
    """Integrate dx/dt = velocity(x, t) from t=0 at ``x0`` to t=1.

    Fixed-step methods use ``grid`` if given (any strictly increasing list from 0 to 1), else
    ``steps`` uniform steps; ``euler`` with an interval velocity (module docstring) takes the
    model's interval steps. ``dopri5`` ignores both and adapts each sample's steps to
    ``rtol``/``atol``; it stops with :class:`SolverError` on a non-finite state, a step size
    below the floor of the dtype, or more than ``max_nfe`` evaluations for one sample.
    ``extras`` (per-row tensors, e.g. ``{"y": labels}``) go to every call of ``velocity``.
    """
    _check_args(method, steps, grid, rtol, atol, max_nfe)
    extras = {k: e.to(x0.device) for k, e in (extras or {}).items()}
    if method == "dopri5":
        if not bool(torch.isfinite(x0).all()):
            raise SolverError("x0 has non-finite values (nan/inf)")
        return _dopri5(velocity, x0, rtol, atol, observer, record, max_nfe, extras)
    batch = x0.shape[0]
    interval = method == "euler" and is_interval(velocity)

    def f(x, t, t_end=None):
        def full(s):
            return torch.full((batch,), s, dtype=x.dtype, device=x.device)
        if t_end is None:
            return velocity(x, full(t), **extras)
        return velocity(x, full(t), full(t_end), **extras)

    times = check_grid(grid) if grid is not None else uniform_grid(steps)
    z, nfe = x0, 0
    states = [z] if record else None
    for t, t_next in zip(times, times[1:]):
        dt = t_next - t
        v0 = f(z, t, t_next if interval else None)
        if observer is not None:
            observer(t, dt, z, v0)
        z, extra = _fixed_step(method, f, z, t, dt, v0)
        nfe += 1 + extra
        if record:
            states.append(z)
    traj = torch.stack(states) if record else None
    return Solution(z, nfe, times, traj, nfe_max=nfe)
