"""Flow matching on the straight path: rectified flow's objective (train, reflow, distill).

The network regresses v(x_t, t) onto x1 - x0 at x_t = t x1 + (1 - t) x0. With t fixed at 0 the
loss is exactly one-step distillation, ‖x0 + v(x0, 0) - x1‖²; on the k-point grid it trains a
k-step Euler student. The trained network *is* the velocity.
"""
from __future__ import annotations

import torch

from ..core.path import TimeDist, interpolate, target_velocity
from .base import Objective


class FlowMatching(Objective):
    name = "flow"

    def __init__(self, time_dist: TimeDist | None = None, loss: str = "l2",
                 huber_c: float = 0.0):
        self.time_dist = time_dist or TimeDist()
        self.loss_kind, self.huber_c = loss, huber_c

    def sample_times(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"t": self.time_dist.sample(n, generator)}

    def loss(self, model, x0, x1, times, **cond) -> torch.Tensor:
        """L2: the mean squared error per element of each sample; pseudo-Huber (2-RF++):
        sqrt(‖diff‖² + c²) - c per sample."""
        t = times["t"]
        pred = model(interpolate(x0, x1, t), t, **cond)
        diff = (pred.float() - target_velocity(x0, x1).float()).flatten(1)
        if self.loss_kind == "l2":
            return diff.pow(2).mean(1)
        return torch.sqrt(diff.pow(2).sum(1) + self.huber_c ** 2) - self.huber_c

    def velocity(self, model, **cond):
        if not cond:
            return model
        return lambda x, t: model(x, t, **cond)

    def to_json(self) -> dict:
        return {"name": self.name}
