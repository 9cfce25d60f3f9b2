"""MLP velocity field for vector data (toy 2-D targets, point clouds)."""
from __future__ import annotations

from torch import nn
import torch

from .embedding import (LEGACY_TIME_SCALE, MAX_PERIOD, LabelEmbedding, TimeEmbedding,
                        interval_times, no_labels)

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "selu": nn.SELU}


class MLP(nn.Module):
    """v(x, t) = MLP([x, emb(t)]): ``depth`` hidden layers of ``hidden`` units.

    The time features are concatenated to the input, as in TorchCFM's and Meta's toy examples,
    so the same network can be compared across libraries. ``time_scale`` and ``max_period``
    shape the time features (see :mod:`rectflow.models.embedding`); their defaults are the
    legacy ones, so a config written before they existed rebuilds the same network.
    With ``num_classes`` the model is class-conditional: a label embedding as wide as the time
    features is concatenated beside them (``y=None`` is the "no label" class).

    ``interval=True`` makes it an average-velocity model ``u(x, t, r=r)`` over [r, t]: the
    time features are those of the start r, and a second embedding of the length t - r goes
    through a bias-free linear map (``gap``, zero at initialisation) into the first layer. So a
    new interval model computes what the same weights compute without it, u(x, r, t) = v(x, r),
    and a flow model's weights load into it unchanged (see :func:`rectflow.models.add_interval`).
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_embed: int = 32,
                 act: str = "silu", time_scale: float = LEGACY_TIME_SCALE,
                 max_period: float = MAX_PERIOD, interval: bool = False,
                 num_classes: int | None = None):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
        self.dim, self.interval = dim, bool(interval)
        self.embed = TimeEmbedding(time_embed, max_period, time_scale)
        layers: list[nn.Module] = []
        self.label = LabelEmbedding(num_classes, time_embed) if num_classes else None
        width = dim + time_embed * (2 if num_classes else 1)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[act]()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)
        if self.interval:
            self.gap = nn.Linear(time_embed, self.net[0].out_features, bias=False)
            nn.init.zeros_(self.gap.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        start, gap = interval_times(t, r, self.interval)
        parts = [x.reshape(shape[0], -1), self.embed(start).to(x.dtype)]
        if self.label is None:
            no_labels(y)
        else:
            parts.append(self.label(y, shape[0], x.device).to(x.dtype))
        h = torch.cat(parts, dim=-1)
        if gap is None:
            return self.net(h).reshape(shape)
        h = self.net[0](h) + self.gap(self.embed(gap).to(x.dtype))
        return self.net[1:](h).reshape(shape)
