"""Objectives of the one training loop (see :mod:`.base`): ``flow`` (rectified flow / flow
matching), ``diffusion`` (a variance-preserving baseline sampled through its probability-flow
ODE) and ``meanflow`` (average velocity over intervals, one-step generation).

A model folder's card records ``objective.to_json()``; :func:`from_card` rebuilds it so that
every solver, metric and stage uses ``objective.velocity(model)`` and never needs to know
which objective trained the network.
"""
from __future__ import annotations

import math

from ..errors import CheckpointError
from ..core.path import TimeDist
from .base import Objective, Velocity
from .diffusion import Diffusion
from .flow import FlowMatching
from .meanflow import MeanFlow

__all__ = ["Objective", "Velocity", "FlowMatching", "Diffusion", "MeanFlow",
           "build_objective", "from_card"]


def build_objective(cfg, shape: tuple[int, ...]) -> Objective:
    """The objective a :class:`~rectflow.options.TrainConfig` asks for, for data of ``shape``."""
    if cfg.objective == "flow":
        huber_c = cfg.huber_c if cfg.huber_c is not None else 0.00054 * math.sqrt(math.prod(shape))
        return FlowMatching(cfg.time_dist, cfg.loss, huber_c)
    if cfg.objective == "diffusion":
        return Diffusion(schedule=cfg.schedule, prediction=cfg.prediction)
    if cfg.objective == "meanflow":
        dist = TimeDist("logit-normal", mean=cfg.mf_time_mean, std=cfg.mf_time_std)
        return MeanFlow(r_dist=dist, t_dist=dist, equal_share=cfg.mf_equal_share,
                        power=cfg.mf_power, drop=cfg.pair_drop)
    raise ValueError(f"unknown objective {cfg.objective!r}")


def from_card(d: dict | None) -> Objective:
    """The objective a run card recorded (flow matching when it recorded none)."""
    d = d or {"name": "flow"}
    name = d.get("name")
    if name == "flow":
        return FlowMatching()
    if name == "diffusion":
        return Diffusion.from_json(d)
    if name == "meanflow":
        return MeanFlow.from_json(d)
    raise CheckpointError(f"unknown objective {name!r} in a run card")
