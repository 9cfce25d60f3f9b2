"""Path and sample metrics.

Straightness (Liu et al. 2023) of trajectories solved on a grid t_0 = 0 < ... < t_N = 1::

    S = Σ_i Δt_i · mean_b ‖(z1 - z0) - v(z_{t_i}, t_i)‖²

with the squared norm per sample and explicit Δt_i. It is 0 exactly when every path is a
straight line travelled at constant speed. Reported also divided by the data dimension D.

Curvature (extrapolation spread): the Δt-weighted variance over t of the endpoint the flow
predicts from each point of its path, ``z_t + (1 - t) v(z_t, t)``, summed over dimensions and
averaged over trajectories. A straight path predicts the same endpoint everywhere (0).

Transport cost: mean_b ‖z1 - z0‖². OT cost: the same for the optimal assignment of the same
endpoints (an exact assignment problem on a subsample), so ``transport - ot`` is how far the
coupling is from optimal.

All of :class:`PathStats` streams: it is an ``observer`` for :func:`rectflow.solvers.solve`
that keeps O(batch) running sums in float64, never the trajectory.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _per_row(a, like: torch.Tensor):
    """A float as it is; a per-row tensor as float64 [n, 1] for the n rows of ``like``."""
    if not torch.is_tensor(a):
        return float(a)
    return a.reshape(-1)[:like.shape[0]].to(like.device, torch.float64)[:, None]


class PathStats:
    """Accumulate straightness, curvature and transport cost over one or many solves.

    Per solve: call :meth:`start` (or pass ``stats.observer`` after ``start``), run the solver,
    then :meth:`finish` with the endpoints. Sums merge across batches, shards and processes via
    :meth:`state` / :meth:`merge`.
    """

    KEYS = ("n", "straightness", "curvature", "transport")

    def __init__(self, dim: int):
        self.dim = dim
        self.sums = {k: 0.0 for k in self.KEYS}
        self._V = self._Q = self._P = self._R = None

    def start(self) -> None:
        self._V = self._Q = self._P = self._R = None

    def observer(self, t, dt, z: torch.Tensor, v: torch.Tensor) -> None:
        """One step: ``t``, ``dt`` floats, or per-row tensors [B] (dopri5 steps each row on
        its own; dt = 0 for rows that did not step). Tensors longer than ``z`` are cut to its
        rows, so a caller may pass a leading slice of the batch."""
        v64 = v.double().flatten(1)
        t, dt = (_per_row(a, v64) for a in (t, dt))
        p = z.double().flatten(1) + (1.0 - t) * v64
        if self._V is None:
            self._V = torch.zeros_like(v64)
            self._P = torch.zeros_like(v64)
            self._Q = v64.new_zeros(v64.shape[0])
            self._R = v64.new_zeros(v64.shape[0])
        self._V += dt * v64
        self._Q += (dt * v64.pow(2)).sum(1)
        self._P += dt * p
        self._R += (dt * p.pow(2)).sum(1)

    def finish(self, z0: torch.Tensor, z1: torch.Tensor) -> None:
        d = (z1.double() - z0.double()).flatten(1)
        dd = d.pow(2).sum(1)
        s = dd - 2 * (d * self._V).sum(1) + self._Q
        c = self._R - self._P.pow(2).sum(1)
        self.sums["n"] += d.shape[0]
        self.sums["straightness"] += float(s.clamp_min(0).sum())
        self.sums["curvature"] += float(c.clamp_min(0).sum())
        self.sums["transport"] += float(dd.sum())
        self.start()

    def state(self) -> dict:
        return dict(self.sums)

    def merge(self, other: dict) -> None:
        for k in self.KEYS:
            self.sums[k] += float(other.get(k, 0.0))

    def result(self) -> dict:
        n = max(self.sums["n"], 1)
        s = self.sums["straightness"] / n
        return {
            "n": int(self.sums["n"]),
            "straightness": s,
            "straightness_per_dim": s / self.dim,
            "curvature": self.sums["curvature"] / n,
            "transport_cost": self.sums["transport"] / n,
        }


def _sq_cost(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a64 = a.detach().double().flatten(1).cpu()
    b64 = b.detach().double().flatten(1).cpu()
    return torch.cdist(a64, b64).pow(2).numpy()


def ot_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    """Exact discrete OT cost mean ‖x0_i - x1_σ(i)‖² over permutations σ (equal sizes)."""
    if x0.shape[0] != x1.shape[0]:
        raise ValueError("ot_cost needs two sets of the same size")
    cost = _sq_cost(x0, x1)
    r, c = linear_sum_assignment(cost)
    return float(cost[r, c].mean())


def ot_assignment(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Permutation σ with x1[σ] the optimal partner of each x0 (squared Euclidean cost)."""
    _, c = linear_sum_assignment(_sq_cost(x0, x1))
    return torch.as_tensor(c, dtype=torch.long)


def w2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact 2-Wasserstein distance between two equal-size empirical distributions."""
    return math.sqrt(max(ot_cost(a, b), 0.0))


MMD_BANDWIDTHS = (0.1, 0.3, 1.0, 3.0)


def mmd(a: torch.Tensor, b: torch.Tensor, bandwidths=MMD_BANDWIDTHS) -> float:
    """MMD (biased V-statistic, square-rooted) with the kernel Σ_σ exp(-‖x-y‖² / (2 σ² D)),
    σ in ``bandwidths``; dividing by D makes the bandwidths mean the same in any dimension."""
    x = a.detach().double().flatten(1).cpu()
    y = b.detach().double().flatten(1).cpu()
    d = x.shape[1]

    def k(p, q):
        dist = torch.cdist(p, q).pow(2)
        return sum(torch.exp(-dist / (2 * s * s * d)) for s in bandwidths)

    val = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    return math.sqrt(max(float(val), 0.0))
