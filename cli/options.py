"""Options shared by several commands, declared once.

:func:`training_options` adds the optimisation options to a command's signature, with the
stage's own defaults shown in ``--help``, and hands the command a ready ``TrainConfig``.
"""

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from rectflow.path import TIME_DISTS, TimeDist
from rectflow.training import LOSSES, TrainConfig

Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output folder.")]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from its last saved step, "
                                             "with its saved settings (--steps may grow).")]
Ckpt = Annotated[Path, typer.Option("--ckpt", help="Checkpoint folder written by train/reflow/distill.")]
UseEma = Annotated[bool, typer.Option("--use-ema/--no-ema", help="Use the EMA weights (default) or the raw ones.")]


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def _training_params(d: TrainConfig) -> list[inspect.Parameter]:
    o = typer.Option
    td = d.time_dist
    return [
        _param("steps", Annotated[int, o(help="Optimizer steps.")], d.steps),
        _param("batch_size", Annotated[int, o(help="Global batch per step (split over processes).")], d.batch_size),
        _param("lr", Annotated[float, o(help="Adam learning rate.")], d.lr),
        _param("warmup", Annotated[int, o(help="Linear learning-rate warmup steps.")], d.warmup),
        _param("grad_clip", Annotated[float, o(help="Clip the gradient norm to this (0: off).")], d.grad_clip),
        _param("ema_decay", Annotated[float, o(help="Decay of the weights' moving average.")], d.ema_decay),
        _param("grad_accum", Annotated[int, o(help="Micro-batches accumulated per step.")], d.grad_accum),
        _param("mixed_precision", Annotated[str, o(help="no, fp16 or bf16 (through Accelerate).")], d.mixed_precision),
        _param("loss", Annotated[str, o(help=f"Regression loss: {', '.join(LOSSES)}.")], d.loss),
        _param("huber_c", Annotated[Optional[float], o(help="Pseudo-Huber c (default 0.00054*sqrt(D)).")], d.huber_c),
        _param("time_dist", Annotated[str, o(help=f"Distribution of t: {', '.join(t for t in TIME_DISTS if t != 'grid')}.")], td.kind),
        _param("logit_mean", Annotated[float, o(help="Mean of the logit-normal time distribution.")], td.mean),
        _param("logit_std", Annotated[float, o(help="Std of the logit-normal time distribution.")], td.std),
        _param("u_a", Annotated[float, o(help="Sharpness a of the U-shaped time distribution.")], td.a),
        _param("seed", Annotated[int, o(help="Seed of every random draw.")], d.seed),
        _param("save_every", Annotated[int, o(help="Save a resumable snapshot every N steps.")], d.save_every),
        _param("log_every", Annotated[int, o(help="Log loss every N steps.")], d.log_every),
        _param("log_with", Annotated[Optional[str], o(help="Also log through an Accelerate tracker, e.g. tensorboard.")], d.log_with),
    ]


def with_options(params: list[inspect.Parameter], build):
    """Decorator: append ``params`` (keyword-only) to a command's signature, so typer shows
    them, and call the command with ``config=build({name: value})`` instead of the values."""
    names = [p.name for p in params]

    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "config"]

        @functools.wraps(fn)
        def command(**kwargs):
            opts = {k: kwargs.pop(k) for k in names}
            return fn(config=build(opts), **kwargs)

        command.__signature__ = sig.replace(parameters=own + params)
        del command.__wrapped__
        return command
    return wrap


def training_options(defaults: TrainConfig, fixed_time: bool = False):
    """Decorator: the command receives ``config: TrainConfig`` built from the shared options.
    With ``fixed_time`` (distillation) the time options are left out."""
    skip = {"time_dist", "logit_mean", "logit_std", "u_a"} if fixed_time else set()

    def build(opts: dict) -> TrainConfig:
        td = defaults.time_dist
        if not fixed_time:
            td = TimeDist(opts.pop("time_dist"), mean=opts.pop("logit_mean"),
                          std=opts.pop("logit_std"), a=opts.pop("u_a"))
            if td.kind not in TIME_DISTS or td.kind == "grid":
                raise typer.BadParameter(f"unknown time distribution {td.kind!r}",
                                         param_hint="--time-dist")
        return TrainConfig(time_dist=td, **opts)

    return with_options([p for p in _training_params(defaults) if p.name not in skip], build)
