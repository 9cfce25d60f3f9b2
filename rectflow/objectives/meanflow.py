"""Average-velocity (MeanFlow) training: one network for every interval [r, t], so one step works.

MeanFlow (Geng, Deng, Bai, Kolter & He, "Mean Flows for One-step Generative Modeling", 2025)
learns the average velocity of the flow over an interval instead of its instantaneous velocity.
Re-MeanFlow (Zhang et al., "Flow Straighter and Faster", 2025) trains it on reflow pairs and
drops the pairs that travel farthest (:func:`filter_pairs_by_distance`).

Convention (rectflow's, the reverse of the paper's)
----------------------------------------------------
t = 0 is the source x0, t = 1 the data x1, x_t = t x1 + (1 - t) x0, and generation runs
forward in time. Let z_s be a solution of dz/ds = v(z_s, s). For 0 <= r <= t <= 1 the
**average velocity over [r, t] seen from the start point** is

    u(z_r, r, t) = (z_t - z_r) / (t - r) = 1/(t - r) * integral_r^t v(z_s, s) ds,

with u(x, r, r) = v(x, r). The network is evaluated at the point a step **starts from**, x = z_r,
and is called ``model(x, t, r=r)``: ``r`` is the interval start (the time of ``x``), the
positional ``t`` the interval end. One step is ``z_t = z_r + (t - r) * model(z_r, t, r=r)``;
one-step generation is ``x0 + model(x0, 1, r=0)``. :meth:`MeanFlow.velocity` hands the
solvers an *interval velocity*, so ``solve(..., "euler", steps=k)`` (and with it ``sample``,
``couple``, ``eval`` and ``compare``) takes exactly these k interval steps; heun, rk4 and dopri5
integrate the instantaneous velocity u(x, t, t).

The identity (derivation in this convention)
---------------------------------------------
Hold t fixed and move the start r along the trajectory. Write (t - r) u(z_r, r, t) =
integral_r^t v(z_s, s) ds and differentiate in r; the right side gives -v(z_r, r), the left
-u + (t - r) du/dr. Hence

    u(z_r, r, t) = v(z_r, r) + (t - r) * du/dr,
    du/dr = (dz_r/dr) . d_x u + (dr/dr) d_r u + (dt/dr) d_t u = v . d_x u + d_r u,

the total derivative along the tangent (v, 1, 0) in (x, r, t): one forward-mode JVP
(``torch.func.jvp``) of ``(x, r) -> model(x, t, r=r)`` with tangents (v, 1). The paper (t = 1
noise, network at z_t, step going down to r) has u = v - (t - r) du/dt; substituting
s = 1 - time flips the signs of u, v and the derivative, giving the + above.

Training replaces the marginal v by the conditional velocity x1 - x0 of the pair at
x_r = r x1 + (1 - r) x0 (as flow matching does; the regression's minimiser is unchanged) and
regresses ``model(x_r, t, r=r)`` onto the stop-gradient target sg(v + (t - r) du/dr). With r = t
the target is v and the loss is exactly flow matching's.

Defaults and where they come from
---------------------------------
* (r, t): two independent logit-normal draws, sorted so r <= t, then t := r for a share
  ``equal_share`` of the samples (the paper's sampler, "v0" in the official code). The paper's
  best ImageNet setting (its Table 1 ablation and Table 4) is lognorm(-0.4, 1.0), 25 % of
  samples with r != t and p = 1.0; in rectflow's time logit(1 - s) = -logit(s), so the mean
  flips sign: ``logit-normal(0.4, 1.0)`` and ``equal_share = 0.75``. ``RECIPES["cifar10"]`` is
  the official code's CIFAR-10 script (Gsunshine/py-meanflow, ``cifar10_v1.sh``: start
  lognorm(-0.6, 1.6), end lognorm(-4.0, 1.6), 75 % r != t, p = 0.75), mirrored the same way;
  that script clamps instead of sorting, which differs only when the two draws cross.
* Adaptive weighting: loss = ||delta||^2 / sg(||delta||^2 + eps)^p with p = ``power`` (paper:
  p = 1, eps = 1e-3). We average the squared error over elements (the paper sums), so with
  p = 0 and r = t the loss equals rectflow's L2 flow loss; eps is then per element.
* ``drop`` (default 0): the share of pairs with the largest ||x1 - x0|| that the pair source
  should drop (Re-MeanFlow drops about 10 %). It is recorded here and applied where the pairs are
  read (:class:`rectflow.data.pairs.StoredPairs`, one cut over the whole pairs set with
  :func:`keep_mask`); :meth:`MeanFlow.loss` never drops anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.autograd.forward_ad as fwad

from ..errors import UserError
from ..core.path import TIME_DISTS, TimeDist, interpolate, target_velocity
from ..core.solvers import Solution, uniform_grid
from .base import Objective, Velocity


def _logit_normal(mean: float, std: float) -> TimeDist:
    return TimeDist("logit-normal", mean=mean, std=std)


RECIPES: dict[str, dict] = {
    "imagenet": dict(r_dist=_logit_normal(0.4, 1.0), t_dist=_logit_normal(0.4, 1.0),
                     equal_share=0.75, power=1.0),
    "cifar10": dict(r_dist=_logit_normal(0.6, 1.6), t_dist=_logit_normal(4.0, 1.6),
                    equal_share=0.25, power=0.75),
}
"""Published settings in rectflow's time convention (see the module docstring)."""


def _bcast(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return s.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def average_velocity_and_derivative(model: torch.nn.Module, x: torch.Tensor, v: torch.Tensor,
                                    r: torch.Tensor, t: torch.Tensor, **cond):
    """``(u, du/dr)``: u = model(x, t, r=r) and its total derivative in the start time r along
    dx/dr = v, i.e. the JVP of (x, r) -> u along (v, 1) with t held fixed. Gradients reach the
    parameters through ``u``; ``du/dr`` is meant to be detached by the caller.

    Dual tensors (``torch.autograd.forward_ad``) rather than ``torch.func.jvp``: the same
    forward-mode formulas, but the model runs as a plain call, so a DDP-wrapped model (a run
    on several processes) works too; under ``torch.func`` its bucket set-up fails."""
    with fwad.dual_level():
        out = model(fwad.make_dual(x, v), t, r=fwad.make_dual(r, torch.ones_like(r)), **cond)
        u, du_dr = fwad.unpack_dual(out)
    return u, du_dr


@dataclass
class MeanFlow(Objective):
    """Average-velocity objective; ``model(x, t, r=r)`` is the average velocity over [r, t]
    from the point ``x`` at time r (see the module docstring for the settings' defaults)."""

    r_dist: TimeDist = field(default_factory=lambda: _logit_normal(0.4, 1.0))
    t_dist: TimeDist = field(default_factory=lambda: _logit_normal(0.4, 1.0))
    equal_share: float = 0.75
    power: float = 1.0
    eps: float = 1e-3
    drop: float = 0.0

    name = "meanflow"

    def __post_init__(self) -> None:
        for label, dist in (("r_dist", self.r_dist), ("t_dist", self.t_dist)):
            if dist.kind not in TIME_DISTS:
                raise UserError(f"{label}.kind must be one of {', '.join(TIME_DISTS)}, "
                                f"got {dist.kind!r}")
        if not 0.0 <= self.equal_share <= 1.0:
            raise UserError(f"equal_share must be in [0, 1], got {self.equal_share}")
        if not (math.isfinite(self.power) and self.power >= 0):
            raise UserError(f"power must be >= 0, got {self.power}")
        if not self.eps > 0:
            raise UserError(f"eps must be > 0, got {self.eps}")
        _check_drop(self.drop)

    @classmethod
    def recipe(cls, name: str, **overrides) -> "MeanFlow":
        """A published setting by name (``imagenet`` or ``cifar10``), optionally overridden."""
        if name not in RECIPES:
            raise UserError(f"unknown MeanFlow recipe {name!r}; choose from {', '.join(RECIPES)}")
        return cls(**{**RECIPES[name], **overrides})

    def sample_times(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``{"r": r, "t": t}`` with 0 <= r <= t <= 1 and r == t for about ``equal_share``."""
        a = self.r_dist.sample(n, generator)
        b = self.t_dist.sample(n, generator)
        r, t = torch.minimum(a, b), torch.maximum(a, b)
        equal = torch.rand(n, generator=generator) < self.equal_share
        return {"r": r, "t": torch.where(equal, r, t)}

    def loss(self, model: torch.nn.Module, x0: torch.Tensor, x1: torch.Tensor,
             times: dict[str, torch.Tensor], **cond) -> torch.Tensor:
        r = times["r"].to(device=x0.device, dtype=x0.dtype)
        t = times["t"].to(device=x0.device, dtype=x0.dtype)
        v = target_velocity(x0, x1)
        u, du_dr = average_velocity_and_derivative(model, interpolate(x0, x1, r), v, r, t,
                                                   **cond)
        target = (v + _bcast(t - r, v) * du_dr).detach()
        err = (u.float() - target.float()).flatten(1).pow(2).mean(1)
        if self.power == 0:
            return err
        return err / (err.detach() + self.eps).pow(self.power)

    def velocity(self, model: torch.nn.Module, **cond) -> Velocity:
        """An interval velocity (see :mod:`rectflow.core.solvers`): ``v(x, t)`` is the
        instantaneous velocity u(x, t, t), for every solver and metric, and ``v(x, t, t_end)``
        the average velocity over [t, t_end] from x at t, which fixed-grid Euler steps with:
        k Euler steps of it are the model's own k interval steps (:func:`sample_steps`)."""
        def v(x: torch.Tensor, t: torch.Tensor, t_end: torch.Tensor | None = None
              ) -> torch.Tensor:
            return model(x, t if t_end is None else t_end, r=t, **cond)
        v.interval = True
        return v

    def to_json(self) -> dict:
        return {"name": self.name, "r_dist": self.r_dist.to_json(),
                "t_dist": self.t_dist.to_json(), "equal_share": self.equal_share,
                "power": self.power, "eps": self.eps, "drop": self.drop}

    @classmethod
    def from_json(cls, d: dict) -> "MeanFlow":
        d = dict(d)
        if d.pop("name", cls.name) != cls.name:
            raise UserError(f"objective name must be {cls.name!r} to rebuild a MeanFlow")
        for key in ("r_dist", "t_dist"):
            if key in d:
                d[key] = TimeDist.from_json(d[key])
        return cls(**d)


# ---------------------------------------------------------------------------- generation
def interval_step(model: torch.nn.Module, x: torch.Tensor, t_from, t_to, **cond) -> torch.Tensor:
    """One jump from time ``t_from`` to ``t_to`` (floats or [B] tensors, t_from <= t_to):
    ``x + (t_to - t_from) * u(x, t_from, t_to)``. One network evaluation."""
    def as_times(s) -> torch.Tensor:
        s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
        return s.expand(x.shape[0]) if s.dim() == 0 else s
    r, t = as_times(t_from), as_times(t_to)
    return x + _bcast(t - r, x) * model(x, t, r=r, **cond)


@torch.inference_mode()
def sample_steps(model: torch.nn.Module, x0: torch.Tensor, steps: int = 1, **cond) -> Solution:
    """``steps`` jumps over uniform intervals from t = 0 to 1; ``nfe`` equals ``steps``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps must be an integer >= 1, got {steps!r}")
    grid = uniform_grid(steps)
    x = x0
    for a, b in zip(grid, grid[1:]):
        x = interval_step(model, x, a, b, **cond)
    return Solution(x=x, nfe=steps, times=grid)


# ---------------------------------------------------------------------------- pair filtering
def _check_drop(drop: float) -> None:
    if not 0.0 <= drop < 1.0:
        raise UserError(f"drop must be in [0, 1), got {drop}")


def pair_distances(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """||x1 - x0|| per pair, shape [B] (float32), to collect over a sharded pairs set."""
    return (x1.float() - x0.float()).flatten(1).norm(dim=1)


def keep_mask(distances: torch.Tensor, drop: float) -> torch.Tensor:
    """Boolean mask keeping all but the ``floor(drop * N)`` largest distances (ties broken by
    position, so the count dropped is exact and the result deterministic)."""
    _check_drop(drop)
    n = distances.shape[0]
    k = int(math.floor(drop * n))
    keep = torch.ones(n, dtype=torch.bool, device=distances.device)
    if k:
        order = torch.argsort(distances, descending=True, stable=True)
        keep[order[:k]] = False
    return keep


def filter_pairs_by_distance(x0: torch.Tensor, x1: torch.Tensor, drop: float) -> torch.Tensor:
    """Re-MeanFlow's truncation: a keep mask [B] that drops the share ``drop`` of pairs whose
    endpoints are farthest apart (||x1 - x0||, Euclidean over all elements).

    Far-travelling reflow pairs are the ones whose paths stay most curved, so they give the
    noisiest average-velocity targets; Re-MeanFlow drops about 10 % (``drop=0.1``). The cut is a
    quantile of the set passed in: to cut on the whole pairs set rather than per batch, collect
    :func:`pair_distances` over all shards and call :func:`keep_mask` once."""
    return keep_mask(pair_distances(x0, x1), drop)
