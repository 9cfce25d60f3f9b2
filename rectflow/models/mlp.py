"""MLP velocity field for vector data (toy 2-D targets, point clouds)."""
from __future__ import annotations

from torch import nn
import torch

from .embedding import LEGACY_TIME_SCALE, MAX_PERIOD, LabelEmbedding, TimeEmbedding, no_labels

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "selu": nn.SELU}


class MLP(nn.Module):
    """v(x, t) = MLP([x, emb(t)]): ``depth`` hidden layers of ``hidden`` units.

    The time features are concatenated to the input, as in TorchCFM's and Meta's toy examples,
    so the same network can be compared across libraries. ``time_scale`` and ``max_period``
    shape the time features (see :mod:`rectflow.models.embedding`); their defaults are the
    legacy ones, so a config written before they existed rebuilds the same network.
    With ``num_classes`` the model is class-conditional: a label embedding as wide as the time
    features is concatenated beside them (``y=None`` is the "no label" class).
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_embed: int = 32,
                 act: str = "silu", time_scale: float = LEGACY_TIME_SCALE,
                 max_period: float = MAX_PERIOD, num_classes: int | None = None):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
        self.dim = dim
        self.embed = TimeEmbedding(time_embed, max_period, time_scale)
        layers: list[nn.Module] = []
        self.label = LabelEmbedding(num_classes, time_embed) if num_classes else None
        width = dim + time_embed * (2 if num_classes else 1)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[act]()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
                ) -> torch.Tensor:
        shape = x.shape
        parts = [x.reshape(shape[0], -1), self.embed(t).to(x.dtype)]
        if self.label is None:
            no_labels(y)
        else:
            parts.append(self.label(y, shape[0], x.device).to(x.dtype))
        h = torch.cat(parts, dim=-1)
        return self.net(h).reshape(shape)
