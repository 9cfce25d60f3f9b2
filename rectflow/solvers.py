"""ODE solvers for dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data).

Every solver has one stateless signature, :func:`solve`, runs batched in torch on the device of
``x0`` (no numpy round-trip per step), counts function evaluations (NFE), and can report each
step to an ``observer(t, dt, z, v)`` — the state ``z`` at the start of the step and the velocity
``v`` evaluated there — so metrics stream without keeping the trajectory. ``record=True`` keeps
the states at every grid point instead.

Methods: ``euler`` (order 1), ``heun`` (2), ``rk4`` (4) on any increasing time grid from 0 to 1,
and ``dopri5``, adaptive Dormand-Prince 5(4) with ``rtol``/``atol``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Observer = Callable[[float, float, torch.Tensor, torch.Tensor], None]

FIXED = ("euler", "heun", "rk4")
METHODS = FIXED + ("dopri5",)


@dataclass
class Solution:
    x: torch.Tensor                      # the endpoint z1
    nfe: int                             # velocity evaluations (per sample)
    times: list[float]                   # the grid actually used (accepted steps for dopri5)
    trajectory: torch.Tensor | None = None  # [len(times), B, ...] when record=True


def uniform_grid(steps: int) -> list[float]:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [i / steps for i in range(steps + 1)]


def check_grid(grid: list[float]) -> list[float]:
    g = [float(t) for t in grid]
    if len(g) < 2 or g[0] != 0.0 or g[-1] != 1.0 or any(b <= a for a, b in zip(g, g[1:])):
        raise ValueError("a time grid must increase strictly from 0 to 1")
    return g


def chunked(velocity: Velocity, chunk: int) -> Velocity:
    """Evaluate ``velocity`` on fixed-size chunks of ``chunk`` rows, zero-padding the last.

    Matrix kernels may round differently for different batch sizes; always calling the model
    with the same number of rows makes each sample's result independent of how many samples
    are solved together, so stored pairs are byte-identical for any ``--batch-size``.
    """
    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, x.shape[0], chunk):
            xs, ts = x[i:i + chunk], t[i:i + chunk]
            n = xs.shape[0]
            if n < chunk:
                xs = torch.cat([xs, xs.new_zeros((chunk - n, *xs.shape[1:]))])
                ts = torch.cat([ts, ts.new_zeros(chunk - n)])
            outs.append(velocity(xs, ts)[:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    return v


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


def _rms(x: torch.Tensor) -> float:
    """The worst trajectory's RMS norm: every sample of the batch must meet the tolerance
    (an RMS over the whole batch would let many easy paths hide one hard one)."""
    return float(x.float().pow(2).flatten(1).mean(1).sqrt().max())


def _dopri5(f, z, rtol, atol, observer, record, max_steps):
    t, nfe = 0.0, 0
    k1 = f(z, t)
    nfe += 1
    # initial step (Hairer, Norsett & Wanner, II.4)
    scale = atol + rtol * z.abs()
    d0, d1 = _rms(z / scale), _rms(k1 / scale)
    h = 0.01 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h = min(h, 1.0)
    times, states = [0.0], [z] if record else None
    steps = 0
    while t < 1.0:
        if steps >= max_steps:
            raise RuntimeError(f"dopri5 took more than {max_steps} steps; loosen rtol/atol")
        h = min(h, 1.0 - t)
        ks = [k1]
        for i in range(1, 7):
            zi = z + h * sum(a * k for a, k in zip(_A[i], ks) if a != 0)
            ks.append(f(zi, t + _C[i] * h))
        nfe += 6
        z5 = zi  # stage 7 is evaluated at the 5th-order solution (FSAL)
        err = h * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks))
        tol = atol + rtol * torch.maximum(z.abs(), z5.abs())
        e = _rms(err / tol)
        if e <= 1.0:
            if observer is not None:
                observer(t, h, z, k1)
            t = 1.0 if t + h >= 1.0 - 1e-12 else t + h
            z, k1 = z5, ks[6]
            times.append(t)
            if record:
                states.append(z)
            steps += 1
        factor = 5.0 if e == 0 else min(5.0, max(0.2, 0.9 * e ** -0.2))
        h *= factor
    traj = torch.stack(states) if record else None
    return Solution(z, nfe, times, traj)


@torch.inference_mode()
def solve(velocity: Velocity, x0: torch.Tensor, method: str = "euler", steps: int = 100,
          grid: list[float] | None = None, rtol: float = 1e-5, atol: float = 1e-5,
          observer: Observer | None = None, record: bool = False,
          max_steps: int = 100_000) -> Solution:
    """Integrate dx/dt = velocity(x, t) from t=0 at ``x0`` to t=1.

    Fixed-step methods use ``grid`` if given (any strictly increasing list from 0 to 1), else
    ``steps`` uniform steps. ``dopri5`` ignores both and adapts its steps to ``rtol``/``atol``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown solver {method!r}; choose from {', '.join(METHODS)}")
    if method == "dopri5" and not (rtol > 0 and atol > 0):
        raise ValueError("dopri5 needs rtol > 0 and atol > 0")
    batch = x0.shape[0]

    def f(x, t):
        return velocity(x, torch.full((batch,), t, dtype=x.dtype, device=x.device))

    if method == "dopri5":
        return _dopri5(f, x0, rtol, atol, observer, record, max_steps)
    times = check_grid(grid) if grid is not None else uniform_grid(steps)
    z, nfe = x0, 0
    states = [z] if record else None
    for t, t_next in zip(times, times[1:]):
        dt = t_next - t
        v0 = f(z, t)
        if observer is not None:
            observer(t, dt, z, v0)
        z, extra = _fixed_step(method, f, z, t, dt, v0)
        nfe += 1 + extra
        if record:
            states.append(z)
    traj = torch.stack(states) if record else None
    return Solution(z, nfe, times, traj)
