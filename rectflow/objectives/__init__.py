"""Objectives of the one training loop (see :mod:`.base`): ``flow`` (rectified flow)."""
from __future__ import annotations

import math

from .base import Objective, Velocity
from .flow import FlowMatching

__all__ = ["Objective", "Velocity", "FlowMatching", "build_objective"]


def build_objective(cfg, shape: tuple[int, ...]) -> Objective:
    """The objective a :class:`~rectflow.options.TrainConfig` asks for, for data of ``shape``."""
    if cfg.objective == "flow":
        huber_c = cfg.huber_c if cfg.huber_c is not None else 0.00054 * math.sqrt(math.prod(shape))
        return FlowMatching(cfg.time_dist, cfg.loss, huber_c)
    raise ValueError(f"unknown objective {cfg.objective!r}")
