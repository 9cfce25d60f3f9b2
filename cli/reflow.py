"""rectflow reflow / distill: train on a coupling dataset with the same loop as train."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from rectflow import api
from rectflow.options import STAGE_DEFAULTS, TRAIN

from .options import (ConfigFile, EvalN, Evaluate, Overwrite, Resume, Threads, UseEma,
                      option_params, use_threads, with_options)
from .progress import ProgressCallback
from .summary import print_stage

Pairs = Annotated[Path, typer.Option("--pairs", help="Coupling dataset folder written by couple.")]
Init = Annotated[Optional[Path], typer.Option(help="Start from this model folder (default: the pairs' teacher).")]
StageOut = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: reflow/ or distill/ beside the pairs folder).")]


@with_options(option_params(TRAIN, STAGE_DEFAULTS["reflow"], section="reflow"))
def reflow(options: dict, pairs: Pairs, out: StageOut = None, init: Init = None,
           use_ema: UseEma = True, config: ConfigFile = None, evaluate: Evaluate = True,
           eval_n: EvalN = None, resume: Resume = False, overwrite: Overwrite = False,
           threads: Threads = None):
    """Train round k+1 on round k's pairs, starting from round k's weights."""
    use_threads(threads)
    with ProgressCallback("reflow") as cb:
        flow = api.reflow(pairs, out=out, init=init, init_ema=use_ema, resume=resume,
                          overwrite=overwrite, callback=cb, evaluate=evaluate, eval_n=eval_n,
                          config=config, **options)
    print_stage(flow.path)


@with_options(option_params(TRAIN, STAGE_DEFAULTS["distill"], skip=("time_dist",),
                             section="distill"))
def distill(options: dict, pairs: Pairs, out: StageOut = None,
            k: Annotated[int, typer.Option("--k", help="Euler steps the student is meant for.")] = 1,
            init: Init = None, use_ema: UseEma = True, config: ConfigFile = None,
            evaluate: Evaluate = True, eval_n: EvalN = None, resume: Resume = False,
            overwrite: Overwrite = False, threads: Threads = None):
    """Distill to k steps: k Euler steps from x0 land on the paired z1."""
    use_threads(threads)
    with ProgressCallback("distill") as cb:
        flow = api.distill(pairs, k=k, out=out, init=init, init_ema=use_ema, resume=resume,
                           overwrite=overwrite, callback=cb, evaluate=evaluate, eval_n=eval_n,
                           config=config, **options)
    print_stage(flow.path)
