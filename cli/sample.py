"""rectflow sample: draw samples from a checkpoint with any solver."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from .console import plain_console

from rectflow import api
from rectflow.api import plural
from rectflow.options import SOLVERS

from .options import Ckpt, Overwrite, UseEma


def sample(
    ckpt: Ckpt,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output .npy file, a .png picture beside it (default <ckpt>-samples.npy beside the model).")] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Number of samples.")] = 1000,
    steps: Annotated[Optional[int], typer.Option(help="Solver steps (default: what the model is for, e.g. 1 when distilled).")] = None,
    solver: Annotated[str, typer.Option(help=f"ODE solver: {', '.join(SOLVERS)}.")] = "euler",
    rtol: Annotated[float, typer.Option(help="dopri5 relative tolerance.")] = 1e-5,
    atol: Annotated[float, typer.Option(help="dopri5 absolute tolerance.")] = 1e-5,
    seed: Annotated[int, typer.Option(help="Seed of the noise (and of the ancestral sampler's draws).")] = 0,
    sampler: Annotated[str, typer.Option(help="ode (solve the model's ODE with --solver) or ancestral (diffusion models: DDPM's stochastic sampler on --steps steps).")] = "ode",
    use_ema: UseEma = True,
    overwrite: Overwrite = False,
    classes: Annotated[Optional[list[str]], typer.Option("--class", help="Conditional model: class name or index (repeat, or comma-separate), or 'all' for a grid with one row per class; -n is split evenly (default all).")] = None,
    guidance: Annotated[float, typer.Option(help="Conditional model: classifier-free guidance w (0 unconditional, 1 plain conditional, >1 sharper).")] = 1.0,
):
    """Sample from a trained flow; writes samples in the data's own units."""
    out = out or api.default_out("sample", ckpt)
    r = api.sample_to_file(ckpt, out, n=n, steps=steps, solver=solver, seed=seed, use_ema=use_ema,
                      rtol=rtol, atol=atol, overwrite=overwrite, sampler=sampler,
                      classes=[c for v in classes or [] for c in v.split(",") if c.strip()],
                      guidance=guidance)
    if r.note:
        plain_console().print(r.note, highlight=False, soft_wrap=True)
    plain_console().print(f"wrote {r.shape[0]} samples to {r.samples} ({r.sampler}, "
                          f"{plural(r.steps, 'step')}, {r.nfe:g} NFE per sample)"
                          + (f", picture {r.picture}" if r.picture else ""))
