"""rectflow reflow / distill: train on a coupling dataset with the same loop as train."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from rectflow import stages
from rectflow.training import TrainConfig

from .options import Out, Overwrite, Resume, UseEma, training_options
from .progress import ProgressCallback
from .summary import print_metrics

Pairs = Annotated[Path, typer.Option("--pairs", help="Coupling dataset folder written by couple.")]
Init = Annotated[Optional[Path], typer.Option(help="Start from this checkpoint (default: the pairs' teacher).")]


@training_options(stages.reflow_defaults())
def reflow(config: TrainConfig, pairs: Pairs, out: Out, init: Init = None,
           use_ema: UseEma = True, resume: Resume = False, overwrite: Overwrite = False):
    """Train round k+1 on round k's pairs, starting from round k's weights."""
    with ProgressCallback("reflow") as cb:
        path = stages.reflow(pairs, out, init=init, init_ema=use_ema, config=config,
                             resume=resume, overwrite=overwrite, callback=cb)
    print_metrics(path)


@training_options(stages.distill_defaults(), fixed_time=True)
def distill(config: TrainConfig, pairs: Pairs, out: Out,
            k: Annotated[int, typer.Option("--k", help="Euler steps the student is meant for.")] = 1,
            init: Init = None, use_ema: UseEma = True, resume: Resume = False,
            overwrite: Overwrite = False):
    """Distill to k steps: k Euler steps from x0 land on the paired z1."""
    with ProgressCallback("distill") as cb:
        path = stages.distill(pairs, out, k=k, init=init, init_ema=use_ema, config=config,
                              resume=resume, overwrite=overwrite, callback=cb)
    print_metrics(path)
