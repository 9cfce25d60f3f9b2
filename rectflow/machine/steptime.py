"""Image defaults sized for the machine as well as the data: on a CPU, a U-Net width and a
batch whose training run ends in minutes, chosen from timed trial steps.

The image recipe (:func:`rectflow.models.unet_recipe`, batch 128) follows the resolution; on
a 2-core CPU one step of its 28x28 U-Net (width 64) at batch 128 takes ~13 s, so 300 steps
take about an hour. :func:`fit_recipe` times a few trial steps of the recipe's U-Net and, when
the run's ``train_steps`` would take longer than :data:`CPU_BUDGET`, walks down a ladder --
the width halved down to :data:`MIN_WIDTH`, then the batch halved down to :data:`MIN_BATCH` --
to the first rung that fits (else the last), and says in one line what it chose and the ETA.
A width or batch the user gave is kept as it is (only the other is chosen; both given: no
trial at all). With CUDA the full recipe is kept: it is what a GPU trains in minutes.

A step's time is modelled as ``a + b * batch``: two timed steps (at :data:`PROBE` and twice
that) after a warm-up step at each of the two sizes (a batch shape's first step costs about
twice a later one; timed cold, it made the 8x8 U-Net's step at batch 128 look 8 times slower
than it is), on a throwaway copy of the network (the global RNG is left as
it was), so the big candidates cost seconds to judge, not a full step at batch 128; at each
thread count the run may use (:func:`~rectflow.machine.threads.candidates`), the faster
kept, as the run's own thread tuner will.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import torch

from ..models import build_model
from . import threads

CPU_BUDGET = 300.0        # seconds of training a default image run plans for on a CPU
MIN_WIDTH, MIN_BATCH = 16, 32
PROBE = 8                 # trial batches: PROBE and 2 * PROBE samples
Timer = Callable[[dict, int], float]   # (model config, batch) -> seconds per training step


def _trial_line(model_cfg: dict, shape: tuple[int, ...], clock, counts: list[int]
                ) -> tuple[float, float]:
    """(a, b) of ``seconds = a + b * batch`` for one optimizer step of this network, at the
    faster of the thread ``counts`` the run may use (on a busy machine 1 thread can be ten
    times faster than 2: the run's own tuner would find that too)."""
    before = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model(model_cfg).train()
        opt = torch.optim.Adam(net.parameters())

        def step(n: int) -> float:
            x, t = torch.randn(n, *shape), torch.rand(n)
            start = clock()
            (net(x, t) - x).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return clock() - start
        best = None
        try:
            for count in counts:
                torch.set_num_threads(count)
                warm = step(PROBE)   # warm-up: first-call allocations
                if best is not None and warm > 2 * best[1]:
                    continue   # slower at half the batch: it can no longer win
                step(2 * PROBE)   # a batch shape's first step costs ~2x: warm both sizes
                t1, t2 = step(PROBE), step(2 * PROBE)
                if best is None or t2 < best[1]:
                    best = (t1, t2)
        finally:
            torch.set_num_threads(before)
    t1, t2 = best
    # a noisy (shared) machine can make t2 < t1: never less than a quarter of t2 per sample
    b = max((t2 - t1) / PROBE, t2 / (8 * PROBE))
    return max(t1 - b * PROBE, 0.0), b


def trial_timer(shape: tuple[int, ...], clock=time.perf_counter) -> Timer:
    """Seconds per training step of a config at a batch, from trial steps (one set per
    network, reused for every batch)."""
    lines: dict[str, tuple[float, float]] = {}

    def seconds(model_cfg: dict, batch: int) -> float:
        key = json.dumps(model_cfg, sort_keys=True)   # a dict key, not a file: no record
        if key not in lines:
            lines[key] = _trial_line(model_cfg, shape, clock, threads.candidates())
        a, b = lines[key]
        return a + b * batch
    return seconds


def _halvings(start: int, floor: int) -> list[int]:
    out = [start]
    while out[-1] // 2 >= floor:
        out.append(out[-1] // 2)
    return out


def ladder(width: int, batch: int, width_given: bool, batch_given: bool, accum: int = 1
           ) -> list[tuple[int, int]]:
    """(width, batch) candidates, largest first: the width halved, then the batch (only to
    batches that ``accum`` micro-batches divide)."""
    widths = [width] if width_given else _halvings(width, MIN_WIDTH)
    batches = [batch] if batch_given else [b for b in _halvings(batch, MIN_BATCH)
                                           if b % accum == 0] or [batch]
    return [(w, batches[0]) for w in widths] + [(widths[-1], b) for b in batches[1:]]


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fit_recipe(shape: tuple[int, ...], model_cfg: dict, cfg, given: dict, overrides: dict,
               note: Callable[[str], None], timer: Timer | None = None
               ) -> tuple[dict, object]:
    """(model config, train config) for an image run of ``cfg.train_steps`` on this machine.

    ``given`` holds the options the user set (``batch_size`` among them or not), ``overrides``
    the model settings (``width``); ``timer`` defaults to :func:`trial_timer`. Unchanged on
    a GPU, for vectors, for a non-U-Net and when width and batch are both given."""
    width_given, batch_given = "width" in overrides, "batch_size" in given
    if (len(shape) != 3 or model_cfg.get("type") != "unet" or torch.cuda.is_available()
            or (width_given and batch_given)):
        return model_cfg, cfg
    timer = timer or trial_timer(shape)
    steps = cfg.train_steps
    rungs = ladder(int(model_cfg["width"]), cfg.batch_size, width_given, batch_given,
                   cfg.grad_accum)
    for width, batch in rungs:
        per_step = timer({**model_cfg, "width": width}, batch)
        if per_step * steps <= CPU_BUDGET:
            break
    full = (width, batch) == rungs[0] and not (width_given or batch_given)
    mark = {True: " (given)", False: ""}
    note(f"images on CPU: U-Net width {width}{mark[width_given]}, batch {batch}"
         f"{mark[batch_given]}{', the full recipe' if full else ''} (about {per_step:.2g} "
         f"s/step, ETA {duration(per_step * steps)} for {steps} steps); --width/--batch-size "
         "to override")
    model_cfg = {**model_cfg, "width": width}
    return model_cfg, (cfg.replace(batch_size=batch) if batch != cfg.batch_size else cfg)
