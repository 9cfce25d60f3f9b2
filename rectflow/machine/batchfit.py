"""A training batch that fits the device: estimated from one trial forward pass.

The bytes a training step needs grow with the batch by what the forward pass saves for the
backward pass (activations), about twice over once the backward pass runs; the rest is fixed:
weights, their gradients, Adam's two moments and the EMA copy (5 x the parameters).
:func:`step_memory` measures the first from two small trial forward passes (tensors saved for
backward, counted once each, through ``torch.autograd.graph.saved_tensors_hooks``);
:func:`fit_batch` caps a default batch to half the free memory and refuses a given one that
does not fit, and says which in one line.
"""
from __future__ import annotations

import torch

from ..errors import ResourceError
from ..io import available_memory, human_bytes

SHARE = 0.5        # of the free memory a training step may plan to use (others run too)
BACKWARD = 2.0     # peak of a step / bytes saved for backward


def _saved_bytes(model: torch.nn.Module, shape: tuple[int, ...], n: int, device) -> int:
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        if t.data_ptr() not in params:
            seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    x = torch.zeros((n, *shape), device=device)
    t = torch.full((n,), 0.5, device=device)
    with torch.random.fork_rng(devices=[]), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, t)
    del out
    return sum(seen.values())


def step_memory(model: torch.nn.Module, shape: tuple[int, ...], device="cpu"
                ) -> tuple[int, int]:
    """(bytes per sample, fixed bytes) of one optimizer step of ``model`` on data ``shape``."""
    a, b = _saved_bytes(model, shape, 2, device), _saved_bytes(model, shape, 6, device)
    per_sample = max(1, round(BACKWARD * (b - a) / 4 + 4 * 2 * _numel(shape)))
    fixed = 5 * sum(p.numel() * p.element_size() for p in model.parameters())
    return per_sample, fixed


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def fit_batch(model: torch.nn.Module, shape: tuple[int, ...], batch_size: int,
              grad_accum: int = 1, given: bool = False, device=None
              ) -> tuple[int, str | None]:
    """The batch to train with and a one-line note (None when there is nothing to say).

    A default ``batch_size`` larger than fits in half the free memory is cut to the largest
    power of two that does; a ``given`` one is refused with a ResourceError instead."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    free = available_memory(device)
    if free is None:
        return batch_size, None
    per_sample, fixed = step_memory(model, shape, device)
    budget = SHARE * free - fixed
    fits = max(0, int(budget // per_sample)) * grad_accum
    need = fixed + per_sample * (batch_size // grad_accum)
    what = (f"~{human_bytes(per_sample)} per sample in a training step, "
            f"{human_bytes(free)} free")
    if batch_size <= fits:
        return batch_size, f"batch_size {batch_size} ({what}: up to {fits:,} fit)"
    if given:
        raise ResourceError(f"batch_size {batch_size} needs ~{human_bytes(need)} in a training "
                            f"step; {human_bytes(free)} free: use batch_size <= {max(fits, 1)} "
                            f"or a larger grad_accum")
    if fits < grad_accum:
        raise ResourceError(f"even one sample per step needs ~{human_bytes(fixed + per_sample)}"
                            f"; {human_bytes(free)} free")
    micro = fits // grad_accum
    chosen = (1 << (micro.bit_length() - 1)) * grad_accum
    return chosen, (f"batch_size {chosen}, not the default {batch_size}, to fit memory "
                    f"({what})")


def choose_batch(model: torch.nn.Module, shape: tuple[int, ...], cfg, model_cfg: dict,
                 given: dict, note) -> object:
    """``cfg`` with a batch that fits (:func:`fit_batch`); ``note(text)`` gets one line for
    images (the recipe and the memory behind the batch) and for a cut batch of any data."""
    bs, text = fit_batch(model, shape, cfg.batch_size, cfg.grad_accum,
                         given="batch_size" in given)
    if len(shape) == 3 and text:
        size = "x".join(map(str, shape[1:])) + f"x{shape[0]}"
        text = (f"image defaults for {size}: U-Net width {model_cfg.get('width')}, lr "
                f"{cfg.lr:g}, {text}")
    if text and (len(shape) == 3 or bs != cfg.batch_size):
        note(text)
    return cfg.replace(batch_size=bs) if bs != cfg.batch_size else cfg
