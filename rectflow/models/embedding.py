"""Sinusoidal embedding of the time t in [0, 1], shared by every model."""
from __future__ import annotations

import math

import torch
from torch import nn


class TimeEmbedding(nn.Module):
    """Maps t of shape [B] to [B, dim] features: sin/cos at log-spaced frequencies.

    t is scaled by 1000 first so the low frequencies still resolve small differences in t.
    """

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError("time embedding dim must be even")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = 1000.0 * t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
