"""The peers' objectives on rectflow's network, data stream and training recipe.

TorchCFM and Meta's ``flow_matching`` ship a path/matcher but no training loop, and
lucidrains' ``RectifiedFlow`` is a loss module; so every peer runs in :func:`fit_peer`, one plain
loop that copies rectflow's recipe (Adam, constant learning rate, no clipping, the same EMA
class) and draws exactly the pairs and times rectflow's ``train`` draws for the same seed. The
only thing that differs between a peer row and ``rectflow rf1`` is the peer's own code that turns
(x0, x1, t) into a regression target. Peers are imported lazily: a missing one becomes a row
that says so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rectflow.training.pairs import IndependentPairs
from rectflow.data import Dataset
from rectflow.core.path import TimeDist
from rectflow.core.seeding import derive_seed, generator
from rectflow.training.loop import EMA

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class NotInstalled(Exception):
    """The peer's package cannot be imported."""


@dataclass
class Recipe:
    """What every method shares: optimizer, batch, steps, EMA, seed."""

    steps: int
    batch_size: int = 2048
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0


def fit_peer(net: torch.nn.Module, loss_fn: Loss, dataset: Dataset, recipe: Recipe) -> dict:
    """Train ``net`` in place on ``loss_fn``; leave the EMA weights in it (as rectflow
    evaluates its EMA weights). Returns the loop's samples/s and seconds."""
    source = IndependentPairs(dataset, recipe.seed)
    times = TimeDist()
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    ema = EMA(net, recipe.ema_decay)
    ema.track(net)
    np.random.seed(derive_seed(recipe.seed, "numpy") % 2**32)   # POT plan sampling uses numpy
    net.train()
    started = time.perf_counter()
    for step in range(1, recipe.steps + 1):
        x0, x1 = source.batch(step - 1, recipe.batch_size)
        t = times.sample(recipe.batch_size, generator(recipe.seed, "time", step - 1))
        loss = loss_fn(x0, x1, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(step)
    seconds = time.perf_counter() - started
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss)} at the last step")
    net.load_state_dict(ema.state_dict())
    return {"train_samples_per_s": recipe.steps * recipe.batch_size / seconds,
            "train_seconds": seconds}


def _import(module: str, names: list[str]):
    """``from module import names``; NotInstalled if the package itself is absent."""
    import importlib
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name.split(".")[0]):
            raise NotInstalled(f"not installed ({e.name})") from None
        raise
    return [getattr(mod, n) for n in names]


# ------------------------------------------------------------------------------- objectives
OT_BLOCK = 256   # rectflow.training.pairs.OTPairs' default block


def torchcfm_loss(net: torch.nn.Module, ot: bool) -> Loss:
    """TorchCFM's I-CFM (``ConditionalFlowMatcher``) or OT-CFM (exact minibatch OT plan via
    POT, pairs sampled from the plan), both with sigma = 0, the library default."""
    cls_name = ("ExactOptimalTransportConditionalFlowMatcher" if ot
                else "ConditionalFlowMatcher")
    (cls,) = _import("torchcfm.conditional_flow_matching", [cls_name])
    matcher = cls(sigma=0.0)

    def loss(x0, x1, t):
        # OT-CFM's plan is solved per block of OT_BLOCK pairs, the minibatch rectflow's
        # coupling="ot" uses, so both OT rows do the same assignment work per step
        block = OT_BLOCK if ot else x0.shape[0]
        parts = [matcher.sample_location_and_conditional_flow(x0[i:i + block], x1[i:i + block],
                                                              t=t[i:i + block])
                 for i in range(0, x0.shape[0], block)]
        t, xt, ut = (torch.cat(p) for p in zip(*parts))
        return F.mse_loss(net(xt, t), ut)
    return loss


def meta_condot_loss(net: torch.nn.Module) -> Loss:
    """Meta's ``AffineProbPath`` with the ``CondOTScheduler`` (alpha_t = t, sigma_t = 1 - t)."""
    (path_cls,) = _import("flow_matching.path", ["AffineProbPath"])
    (sched_cls,) = _import("flow_matching.path.scheduler", ["CondOTScheduler"])
    path = path_cls(scheduler=sched_cls())

    def loss(x0, x1, t):
        s = path.sample(x_0=x0, x_1=x1, t=t)
        return F.mse_loss(net(s.x_t, s.t), s.dx_t)
    return loss


def lucidrains_flow(net: torch.nn.Module):
    """lucidrains' ``RectifiedFlow`` around our network: velocity objective, MSE, no data
    rescaling (its default maps [0, 1] images to [-1, 1]), time passed as ``t``."""
    (cls,) = _import("rectified_flow_pytorch", ["RectifiedFlow"])
    return cls(net, time_cond_kwarg="t", data_shape=(2,), data_normalize_fn=None,
               data_unnormalize_fn=None)


def lucidrains_loss(net: torch.nn.Module) -> Loss:
    flow = lucidrains_flow(net)
    return lambda x0, x1, t: flow(x1, noise=x0, times=t)


def lucidrains_reflow_loss(teacher_net: torch.nn.Module, student_net: torch.nn.Module,
                           batch_size: int) -> Loss:
    """lucidrains' ``Reflow``: the student regresses on (noise, teacher sample) pairs that the
    frozen teacher generates on the fly each step; the given (x0, x1, t) are not used."""
    (cls,) = _import("rectified_flow_pytorch", ["Reflow"])
    student = lucidrains_flow(student_net)
    reflow = cls(student, lucidrains_flow(teacher_net), batch_size=batch_size)
    return lambda x0, x1, t: reflow()
