"""Path and sample metrics.

Straightness (Liu et al. 2023) of trajectories solved on a grid t_0 = 0 < ... < t_N = 1::

    S = Σ_i Δt_i · mean_b ‖(z1 - z0) - v(z_{t_i}, t_i)‖²

with the squared norm per sample and explicit Δt_i. It is 0 exactly when every path is a
straight line travelled at constant speed. Reported also divided by the data dimension D.

Curvature (extrapolation spread): the Δt-weighted variance over t of the endpoint the flow
predicts from each point of its path, ``z_t + (1 - t) v(z_t, t)``, summed over dimensions and
averaged over trajectories. A straight path predicts the same endpoint everywhere (0).

Transport cost: mean_b ‖z1 - z0‖². OT cost: the same for the optimal assignment of the same
endpoints (an exact assignment problem), so ``transport - ot`` is how far the coupling is from
optimal. :func:`path_report` puts all of these on ONE set of endpoints and states its size.

Publishing numbers: :func:`metric_floor` is the value a metric takes between two draws of the
data itself at the same n (no model can be told apart from the data below it),
:func:`summarize` gives mean ± std over K evaluation seeds, and :func:`tie_groups` groups
models whose differences are within that noise.

All of :class:`PathStats` streams: it is an ``observer`` for :func:`rectflow.core.solvers.solve`
that keeps O(batch) running sums in float64, never the trajectory.
"""
from __future__ import annotations

from .solvers import solve
import math
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .seeding import generator


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


# ---------------------------------------------------------------- one set for every path figure
def path_report(stats: PathStats, z0: torch.Tensor, z1: torch.Tensor) -> dict:
    """Straightness, curvature, transport cost and exact OT cost of ONE set of endpoints.

    ``stats`` must have followed exactly the paths from ``z0`` to ``z1`` (the same rows, in
    any number of batches), so every figure is on the same ``n`` pairs, stated in the result
    as ``n``; ``ot_gap = transport_cost - ot_cost`` (>= 0: the identity is one of the
    assignments the OT problem ranges over). Cap ``n`` by solving the paths of the first rows
    only: the assignment problem costs O(n^3)."""
    m = z0.shape[0]
    if z1.shape[0] != m or int(stats.sums["n"]) != m:
        raise ValueError(f"path metrics cover {int(stats.sums['n'])} paths but the endpoints "
                         f"are {m} and {z1.shape[0]} rows; use one set for both")
    out = stats.result()
    transport = float((z1.double() - z0.double()).flatten(1).pow(2).sum(1).mean())
    if not math.isclose(transport, out["transport_cost"], rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError("the endpoints given are not those the path metrics followed")
    out["ot_cost"] = ot_cost(z0, z1)
    out["ot_gap"] = out["transport_cost"] - out["ot_cost"]
    return out


# ------------------------------------------------------------------ noise floors and ties
@dataclass(frozen=True)
class Summary:
    """A figure over K evaluation seeds (or K floor draws): mean ± sample std (ddof = 1)."""

    mean: float
    std: float
    k: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (K={self.k})"

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "k": self.k}


def summarize(values) -> Summary:
    """Mean ± std of K values (std 0 for K = 1); refuses NaN/inf and empty input."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"summarize needs one or more finite values, got {v.tolist()}")
    return Summary(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


Reference = Union[torch.Tensor, Callable[[int, torch.Generator], torch.Tensor]]


def metric_floor(reference: Reference, n: int, metric: Callable = w2, seed: int = 0,
                 repeats: int = 5) -> Summary:
    """The noise floor of a distribution metric at sample size ``n``: the metric between two
    independent reference draws of ``n`` points each, over ``repeats`` seeded draws.

    ``reference`` is either a sampler ``(n, generator) -> [n, ...]`` (an infinite target) or
    a tensor of held-out points, from which two disjoint random subsets are drawn (it needs
    ``2 n`` rows). A model whose metric is within this floor cannot be told apart from the
    data at this ``n``."""
    if n < 2 or repeats < 1:
        raise ValueError(f"metric_floor needs n >= 2 and repeats >= 1, got n={n}, "
                         f"repeats={repeats}")
    if torch.is_tensor(reference) and reference.shape[0] < 2 * n:
        raise ValueError(f"the floor at n={n} needs {2 * n} held-out points, got "
                         f"{reference.shape[0]}")
    vals = []
    for r in range(repeats):
        g = generator(seed, "metric-floor", r)
        if torch.is_tensor(reference):
            idx = torch.randperm(reference.shape[0], generator=g)
            a, b = reference[idx[:n]], reference[idx[n:2 * n]]
        else:
            a, b = reference(n, g), reference(n, g)
        vals.append(metric(a, b))
    return summarize(vals)


def tie_groups(results: dict[str, Summary], floor: Summary | float | None = None,
               z: float = 2.0) -> list[list[str]]:
    """Group models (lower metric is better) whose differences are within the noise.

    The rule, exactly:

    1. Sort the models by mean (ties in the mean broken by name).
    2. Noise of a comparison a vs b: ``z * max(sqrt(s_a² + s_b²), s_floor)``, with s_a, s_b
       the std over evaluation seeds and s_floor the std of the floor (0 when the floor is a
       float or None).
    3. Floor group: every model with ``mean <= floor_mean + z * max(s_model, s_floor)`` is
       indistinguishable from the reference data; they form the first group together.
    4. The rest, in order: a model joins the current group when its mean exceeds that of the
       group's FIRST (best) member by less than their comparison noise (step 2); otherwise it
       starts a new group. Anchoring at the first member keeps a chain of small steps from
       tying models that differ by much.

    Returns the groups best first, each in order of mean. Models in one group are ties."""
    if floor is None:
        f_mean, f_std = None, 0.0
    elif isinstance(floor, Summary):
        f_mean, f_std = floor.mean, floor.std
    else:
        f_mean, f_std = float(floor), 0.0
    order = sorted(results, key=lambda k: (results[k].mean, k))
    groups: list[list[str]] = []
    if f_mean is not None:
        at_floor = [k for k in order if results[k].mean <= f_mean + z * max(results[k].std, f_std)]
        if at_floor:
            groups.append(at_floor)
        order = [k for k in order if k not in at_floor]
    lead = None
    for k in order:
        if lead is not None:
            a, b = results[lead], results[k]
            if b.mean - a.mean < z * max(math.hypot(a.std, b.std), f_std):
                groups[-1].append(k)
                continue
        groups.append([k])
        lead = k
    return groups


# ------------------------------------------------------------- enough data for a verdict
# Below VERDICT_MIN held-out points no model is called better than another: the seed spread
# of a metric says nothing about how the held-out draw itself falls. A W2 floor needs
# max(500, 10 x dimension) points: in 2-D a mean shift of 0.2 (a visible error) gives W2
# 0.53 vs a floor of 0.50 +- 0.03 at n = 100 and 0.42 vs 0.27 +- 0.02 at n = 500 (standard
# normal, 3 draws); the floor shrinks like n^(-1/d) in d dimensions, so under ~10 points
# per dimension it is mostly the spread of the data itself (necessary, not sufficient).
VERDICT_MIN = 100


def w2_points_needed(dim: int) -> int:
    """Points a W2 noise floor needs to be read as a floor: max(500, 10 x dimension)."""
    return max(500, 10 * int(dim))


def verdict(n_reference: int) -> bool:
    """Whether a held-out set of this size can rank models."""
    return int(n_reference) >= VERDICT_MIN


def few_points(floors: dict, metric: str = "w2") -> bool:
    """Whether ``metric``'s floor in a report's ``floors`` came from too few points."""
    return metric == "w2" and floors.get("w2_points", math.inf) < floors.get(
        "w2_points_needed", 0)


def sample_size_notes(n_reference: int, floors: dict) -> list[str]:
    """One line per way a report's numbers rest on too little data (empty when none)."""
    notes = []
    if not verdict(n_reference):
        notes.append(f"held-out set of {n_reference}: too small for a verdict (fewer than "
                     f"{VERDICT_MIN} points); nothing is ranked")
    if few_points(floors):
        notes.append(f"! W2 floor from {floors['w2_points']} points, fewer than the "
                     f"{floors['w2_points_needed']} it needs (500, and 10 per dimension): "
                     "a W2 near it is noise")
    return notes


def path_metrics(velocity, x0: torch.Tensor, solver: str = "euler", steps: int = 100,
                 ot_subsample: int = 2000, extras: dict | None = None, **solver_kw) -> dict:
    """Straightness, curvature, transport cost and the exact OT cost of the flow, all on one
    set of endpoints: the first ``min(len(x0), ot_subsample)`` source points (``n_paths``)."""
    x0 = x0[:ot_subsample]
    extras = {k: e[:ot_subsample] for k, e in (extras or {}).items()}
    stats = PathStats(math.prod(x0.shape[1:]))
    sol = solve(velocity, x0, method=solver, steps=steps, observer=stats.observer,
                extras=extras, **solver_kw)
    stats.finish(x0, sol.x)
    out = stats.result()
    out["ot_cost"] = ot_cost(x0, sol.x)
    out["n_paths"] = int(x0.shape[0])
    out["solver"], out["steps"], out["nfe"] = solver, steps, sol.nfe
    return out
