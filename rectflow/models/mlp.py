"""MLP velocity field for vector data (toy 2-D targets, point clouds)."""
from __future__ import annotations

from torch import nn
import torch

from .embedding import LEGACY_TIME_SCALE, MAX_PERIOD, TimeEmbedding

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "selu": nn.SELU}


class MLP(nn.Module):
    """v(x, t) = MLP([x, emb(t)]): ``depth`` hidden layers of ``hidden`` units.

    The time features are concatenated to the input, as in TorchCFM's and Meta's toy examples,
    so the same network can be compared across libraries. ``time_scale`` and ``max_period``
    shape the time features (see :mod:`rectflow.models.embedding`); their defaults are the
    legacy ones, so a config written before they existed rebuilds the same network.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_embed: int = 32,
                 act: str = "silu", time_scale: float = LEGACY_TIME_SCALE,
                 max_period: float = MAX_PERIOD):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
        self.dim = dim
        self.embed = TimeEmbedding(time_embed, max_period, time_scale)
        layers: list[nn.Module] = []
        width = dim + time_embed
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[act]()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = torch.cat([x.reshape(shape[0], -1), self.embed(t).to(x.dtype)], dim=-1)
        return self.net(h).reshape(shape)
