"""Velocity models, rebuilt from their JSON config alone.

A config is ``{"type": "mlp" | "unet", **kwargs}``; :func:`build_model` is its only reader.
A model of the user's own class is recorded as ``{"type": "custom", "class": "pkg.mod:Name"}``
and is never rebuilt from JSON (nothing is imported from a file): loading it needs an instance.

``"interval": true`` builds an average-velocity model ``model(x, t, r=r)`` (the meanflow
objective); a config without the key builds exactly the network it always did.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError
from .embedding import DEFAULT_TIME_SCALE
from .mlp import MLP

MODEL_TYPES = ("mlp", "unet")
SIZE_KEYS = ("dim", "hidden", "depth", "time_embed", "channels", "resolution", "width",
             "num_res_blocks")


def custom_config(module: nn.Module) -> dict:
    """How a card records a user's own ``nn.Module``: its class, for the message that tells a
    later reader what to import, and its parameter count, to catch a different instance."""
    cls = type(module)
    return {"type": "custom", "class": f"{cls.__module__}:{cls.__qualname__}",
            "parameters": int(sum(p.numel() for p in module.parameters()))}


def custom_class(config: dict) -> str:
    return str(config.get("class", "?")).replace(":", ".")


def _cls(kind: str):
    if kind == "mlp":
        return MLP
    if kind == "unet":
        from .unet import UNet
        return UNet
    if kind == "custom":
        raise CheckpointError("a model of your own class is not rebuilt from JSON; pass an "
                              "instance (model=...)")
    raise CheckpointError(f"unknown model type {kind!r}; known: {', '.join(MODEL_TYPES)}")


# Upper bounds of every size a config may name (a crafted config.json must not make rectflow
# allocate gigabytes before refusing it): far above any model rectflow trains on a CPU or a
# GPU, far below what exhausts a machine. The parameter count is bounded too.
SIZE_MAX = {"dim": 1 << 20, "hidden": 1 << 14, "depth": 256, "time_embed": 1 << 14,
            "channels": 4, "resolution": 1024, "width": 1024, "num_res_blocks": 16,
            "num_classes": 100_000}
MAX_PARAMETERS = 2_000_000_000
FLOAT_KEYS = ("dropout",)   # time_scale and max_period: checked by the time embedding
LIST_KEYS = ("mults", "attn_resolutions")


def check_model_config(config: dict) -> None:
    """Refuse a config whose sizes or values are out of bounds (CheckpointError naming the
    key), before anything is allocated."""
    import math
    if not isinstance(config, dict):
        raise CheckpointError(f"model config must be a table, got {config!r}")
    for k, v in config.items():
        if k in SIZE_MAX or k == "num_classes":
            if k == "num_classes" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= SIZE_MAX[k]:
                raise CheckpointError(f"model size {k}={v!r} must be a whole number in "
                                      f"1..{SIZE_MAX[k]}")
        elif k in FLOAT_KEYS:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckpointError(f"model setting {k}={v!r} must be a finite number")
        elif k in LIST_KEYS:
            if not (isinstance(v, list | tuple) and len(v) <= 16 and all(
                    type(m) is int and 1 <= m <= SIZE_MAX["resolution"] for m in v)):
                raise CheckpointError(f"model setting {k}={v!r} must be a short list of "
                                      "whole numbers")


def check_overrides(overrides: dict) -> None:
    """Refuse model overrides (``[model]`` of a run config, ``model=`` of a stage) with an
    unknown key or an out-of-bounds value, before any data is read or anything written."""
    import inspect
    from .unet import UNet
    known = {"type"} | {p for cls in (MLP, UNet)
                        for p in inspect.signature(cls.__init__).parameters if p != "self"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CheckpointError(f"unknown model setting(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(sorted(known))})")
    if overrides.get("type", "mlp") not in MODEL_TYPES:
        raise CheckpointError(f"unknown model type {overrides['type']!r}; known: "
                              f"{', '.join(MODEL_TYPES)}")
    check_model_config({k: v for k, v in overrides.items() if k != "type"})


def plan_model(config: dict) -> nn.Module:
    """The network ``config`` describes, built on the meta device: its parameters' names
    and shapes without their memory. Sizes are checked first (:func:`check_model_config`),
    then the parameter count against :data:`MAX_PARAMETERS`."""
    cfg = dict(config)
    kind = cfg.pop("type", None)
    cls = _cls(kind)
    check_model_config(cfg)
    try:
        with torch.device("meta"):
            module = cls(**cfg)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"model config does not fit {cls.__name__}: {e}") from None
    n = sum(p.numel() for p in module.parameters())
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"model config describes {n:,} parameters, more than rectflow's "
                              f"limit of {MAX_PARAMETERS:,}")
    return module


def build_model(config: dict) -> nn.Module:
    plan_model(config)   # sizes, values and parameter count, without allocating
    cfg = dict(config)
    cls = _cls(cfg.pop("type", None))
    try:
        return cls(**cfg)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"model config does not fit {cls.__name__}: {e}") from None


def tensor_shapes(module: nn.Module) -> dict[str, list[int]]:
    """Name -> shape of every tensor of ``module``'s state dict (works on the meta device)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def unet_recipe(channels: int, resolution: int) -> dict:
    """The image recipe's U-Net for square images: width 32 up to 16 px, 64 above (on 2 CPU
    cores a training step at batch 128 costs ~0.08 s at 8 px, ~0.7 s at 16 px, ~20 s above;
    at 8 px width 32, with the image reflow at lr 1e-3, gave one-step students better than
    width 16 by more than the seeds' spread on digits and shapes,
    benchmarks/IMAGE_ABLATION.md); two
    levels up to 16 px, three above, fewer when the resolution does not halve that often;
    attention at a quarter of the resolution from 32 px up."""
    halvings = 0
    while resolution % 2 ** (halvings + 1) == 0 and resolution // 2 ** (halvings + 1) >= 4:
        halvings += 1
    small = resolution <= 16
    levels = min(halvings, 1 if small else 2) + 1
    mults = [1, 2, 2][:levels]
    attn = resolution // 4
    return {"type": "unet", "channels": channels, "resolution": resolution,
            "width": 32 if small else 64, "mults": mults,
            "num_res_blocks": 1 if small else 2,
            "attn_resolutions": [] if small or resolution % 4 or levels < 3 else [attn],
            "dropout": 0.0}


def default_model_config(shape: tuple[int, ...], objective: str | None = None,
                         **overrides) -> dict:
    """A sensible model for data of this shape: an MLP for vectors, the image recipe's U-Net
    (:func:`unet_recipe`) for images; with an interval input (r=) when ``objective`` is
    ``"meanflow"``."""
    if len(shape) == 1:
        cfg = {"type": "mlp", "dim": shape[0], "hidden": 256, "depth": 3, "time_embed": 32,
               "act": "silu", "time_scale": DEFAULT_TIME_SCALE}
    elif len(shape) == 3:
        c, h, w = shape
        if h != w:
            raise CheckpointError(f"images must be square, got {h}x{w}")
        cfg = {**unet_recipe(c, h), "time_scale": DEFAULT_TIME_SCALE}
    else:
        raise CheckpointError(f"no default model for data of shape {list(shape)}")
    if objective == "meanflow":
        cfg["interval"] = True
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


# ------------------------------------------------------------------------- interval input
INTERVAL_PARAMS = ("gap.", "gap_mlp.")   # the only parameters interval=True adds


def interval_config(config: dict) -> dict:
    """The config of the same built-in network with an interval input (``r=``)."""
    if config.get("type") not in MODEL_TYPES:
        raise CheckpointError("only rectflow's own models (mlp, unet) get an interval input; "
                              "your own class must accept r= itself")
    return {**config, "interval": True}


def load_into_interval(module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a flow model's weights ``state`` into the same network built with
    ``interval=True``: every tensor but the interval input's, which keeps its zero start, so
    the result computes u(x, r, t) = v(x, r) (one Euler step of the flow from r)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    extra = [k for k in missing if not k.startswith(INTERVAL_PARAMS)]
    if extra or unexpected:
        raise CheckpointError(f"the weights do not fit this interval model: missing "
                              f"{extra[:3]}, unexpected {list(unexpected)[:3]}")
    return module


def student_model(teacher, ema: bool, objective: str, module: nn.Module | None,
                  build: Callable[[dict], nn.Module]) -> tuple[nn.Module, dict]:
    """The network a stage trained on ``teacher``'s pairs starts from, and its config: the
    teacher's (EMA) weights; for the meanflow objective and a built-in flow teacher, the same
    network with an interval input (``build(config)`` makes it with its seeded
    initialisation), so the student starts as one Euler step of the teacher from r.
    ``teacher`` is a :class:`~rectflow.records.checkpoint.Checkpoint`."""
    card = teacher.card
    if module is not None or objective != "meanflow" or card.model.get("interval") \
            or card.is_custom:
        return teacher.load_model(ema=ema, module=module), card.model
    from ..io.files import load_tensors
    config = interval_config(card.model)
    path = teacher.weights_path(ema)
    card.check_weights(path)
    return load_into_interval(build(config), load_tensors(path)), config
