"""What an objective is: how a batch of (x0, x1) pairs becomes a loss, and how a trained model
becomes a velocity dx/dt for the solvers.

Flow matching (rectified flow), the diffusion baseline and average-velocity (MeanFlow)
training are objectives of the one training loop (:mod:`rectflow.training.loop`). The loop hands an
objective pairs ``x0`` (source, t = 0) and ``x1`` (data, t = 1), the times it drew with
:meth:`Objective.sample_times` from an explicit generator, and conditioning keyword arguments
(``y=`` labels); the objective returns one loss per sample. Every solver and metric then calls
``objective.velocity(model)`` -- a plain ``v(x, t)`` in rectflow's time convention (t = 0
source, t = 1 data) -- so nothing downstream knows which objective trained the model.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Objective(ABC):
    """Abstract base; subclasses set ``name`` and implement the four methods."""

    name: str = ""

    @abstractmethod
    def sample_times(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random times of ``n`` samples, e.g. ``{"t": t}`` or ``{"t": t, "r": r}``."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, x0: torch.Tensor, x1: torch.Tensor,
             times: dict[str, torch.Tensor], **cond) -> torch.Tensor:
        """Per-sample loss of shape [B] (the loop averages it)."""

    @abstractmethod
    def velocity(self, model: torch.nn.Module, **cond) -> Velocity:
        """dx/dt as a function ``v(x, t)`` (t of shape [B], 0 = source, 1 = data)."""

    @abstractmethod
    def to_json(self) -> dict:
        """Everything needed to rebuild this objective; ``{"name": ..., **settings}``."""
