"""Sinusoidal embedding of the time t in [0, 1], shared by every model.

The features are ``sin(s·t·f_k)`` and ``cos(s·t·f_k)`` with ``f_k = P^(-k/half)``, k = 0 ..
half-1: angular frequencies from ``s`` (``time_scale``) down to ``s / P`` (``max_period``).
The highest frequency bounds how fast v(x, t) can vary in t: DDPM's ``s = 1000`` (made for
1000 integer timesteps) puts a period of 2π/1000 ≈ 0.006 into the time features, so a trained
v is jagged in t and an adaptive solver takes many more steps than the paths need.

``LEGACY_TIME_SCALE`` is what every model used before the scale was a config field; a model
config without ``time_scale`` rebuilds with it, so old checkpoints load unchanged.
``DEFAULT_TIME_SCALE`` is what new configs record: with it the fastest feature, sin(t),
varies no faster in t than the paths do.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError

LEGACY_TIME_SCALE = 1000.0
DEFAULT_TIME_SCALE = 1.0
MAX_PERIOD = 10000.0


class TimeEmbedding(nn.Module):
    """Maps t of shape [B] to [B, dim] features: sin/cos at log-spaced frequencies."""

    def __init__(self, dim: int, max_period: float = MAX_PERIOD,
                 time_scale: float = LEGACY_TIME_SCALE):
        super().__init__()
        if dim % 2:
            raise ValueError("time embedding dim must be even")
        for name, v in (("time_scale", time_scale), ("max_period", max_period)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.time_scale = float(time_scale)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = self.time_scale * t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def interval_times(t: torch.Tensor, r: torch.Tensor | None, interval: bool
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The times an interval model embeds for ``model(x, t, r=r)``: the start ``r`` (the time
    of ``x``) and the length ``t - r``. Without ``r`` the interval is empty (r = t): the
    instantaneous velocity at t. A model built without ``interval`` takes no ``r``."""
    if not interval:
        if r is not None:
            raise UserError("this model has no interval input (r=); build it with "
                            "interval=True to train an average-velocity (meanflow) model")
        return t, None
    if r is None:
        return t, torch.zeros_like(t)
    return r, t - r


class LabelEmbedding(nn.Module):
    """A learned vector per class and one more for "no label" (index ``num_classes``), which
    ``y=None`` selects: a model trained with label dropout to that index serves conditional
    and unconditional sampling (classifier-free guidance)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(f"num_classes must be a whole number >= 1, got {num_classes!r}")
        self.null = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if y is None:
            y = torch.full((batch,), self.null, dtype=torch.long, device=device)
        return self.table(y.long())


def no_labels(y) -> None:
    """Unconditional models take no labels: refuse ``y`` rather than ignore it."""
    if y is not None:
        raise ValueError("this model is unconditional (trained without --conditional); "
                         "it takes no labels y")
