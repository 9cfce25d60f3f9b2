"""The straight-line path between noise and data, and the distributions of the time t.

Conventions (fixed across rectflow):

* time runs from noise to data: ``t = 0`` is ``x0 ~ N(0, I)``, ``t = 1`` is the data ``x1``;
* the interpolant is ``x_t = t * x1 + (1 - t) * x0`` and its velocity ``x1 - x0``;
* a velocity model is called ``model(x, t)`` with ``x`` of shape ``[B, ...]`` and ``t`` of
  shape ``[B]``;
* names: ``x0`` noise, ``x1`` data, ``xt``, ``t``, ``v``; ``z1`` the ODE's endpoint from ``x0``.

rfpp and minRF run time the other way; rectflow does not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = t * x1 + (1 - t) * x0`` with ``t`` of shape [B]."""
    tb = _bcast(t, x0)
    return tb * x1 + (1 - tb) * x0


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The velocity of the straight path, ``x1 - x0`` (independent of t)."""
    return x1 - x0


# ---------------------------------------------------------------------------- time samplers
@dataclass(frozen=True)
class TimeDist:
    """A distribution of t on [0, 1]. ``kind`` is one of :data:`TIME_DISTS`.

    * ``uniform``: U[0, 1].
    * ``logit-normal``: sigmoid(N(mean, std)) (Esser et al. 2024).
    * ``u-shaped``: density proportional to cosh(a (t - 1/2)), i.e. ``exp(a t) + exp(a (1 - t))``,
      the U-shaped schedule of 2-rectified flow++ (Lee et al. 2024, a = 4), which puts weight
      near both ends where reflow's error concentrates.
    * ``grid``: uniform on the k points {0, 1/k, ..., (k-1)/k}: distillation to k Euler steps
      (k = 1 is t = 0 only).
    """

    kind: str = "uniform"
    mean: float = 0.0
    std: float = 1.0
    a: float = 4.0
    k: int = 1

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "uniform":
            return torch.rand(n, generator=generator)
        if self.kind == "logit-normal":
            return torch.sigmoid(self.mean + self.std * torch.randn(n, generator=generator))
        if self.kind == "u-shaped":
            # inverse CDF of p(t) ∝ cosh(a (t - 1/2)) on [0, 1]
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            s = math.sinh(self.a / 2)
            t = 0.5 + torch.asinh((2 * u - 1) * s) / self.a
            return t.clamp(0.0, 1.0).float()
        if self.kind == "grid":
            return torch.randint(self.k, (n,), generator=generator).float() / self.k
        raise ValueError(f"unknown time distribution {self.kind!r}")

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind}
        if self.kind == "logit-normal":
            out.update(mean=self.mean, std=self.std)
        elif self.kind == "u-shaped":
            out.update(a=self.a)
        elif self.kind == "grid":
            out.update(k=self.k)
        return out

    @classmethod
    def from_json(cls, d: dict) -> "TimeDist":
        return cls(**d)


TIME_DISTS = ("uniform", "logit-normal", "u-shaped", "grid")
