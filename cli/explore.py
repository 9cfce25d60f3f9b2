"""rectflow explore: one self-contained HTML page replaying several models' trajectories."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from .console import plain_console
from rich.table import Table

from rectflow import api


def _choices(steps: str, adaptive: bool) -> list:
    try:
        counts = sorted({int(s) for s in steps.split(",") if s.strip()})
    except ValueError:
        raise typer.BadParameter(f"must be comma-separated whole numbers, got {steps!r}",
                                 param_hint="--steps") from None
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"must be whole numbers >= 1, got {steps!r}",
                                 param_hint="--steps")
    return [("euler", k) for k in counts] + ([("dopri5", None)] if adaptive else [])


def summary_table(data: dict) -> Table:
    """One column per model: its straightness, then W2 (NFE) under every sampler."""
    t = Table(title="explorer: W2 to held-out data (NFE per sample)", title_justify="left")
    t.add_column("")
    names = list(data["models"])
    for name in names:
        t.add_column(f"{name}\n{data['models'][name]['metrics'].get('objective', 'flow')}",
                     justify="right")
    t.add_row(f"straightness (Euler {data['path_steps']})",
              *(f"{data['models'][m]['metrics']['straightness']:.3g}" for m in names))
    floor = None
    for c in data["choices"]:
        cells = []
        for name in names:
            run = data["runs"][name].get(c["key"])
            m = run["metrics"] if run else {}
            floor = m.get("w2_floor", floor)
            cells.append("-" if not run else f"{m['w2']:.3g} ({m['nfe']:g})" if "w2" in m
                         else f"({m['nfe']:g})")
        t.add_row(c["key"].replace("-adaptive", ""), *cells)
    if floor is not None:
        t.caption = f"W2 floor (data vs data, same n): {floor:.3g}"
    return t


def explore(
    ckpt: Annotated[list[Path], typer.Option("--ckpt", help="Model folder; repeat for each, or give one run folder from `rectflow run`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .html file (never inside an input folder).")],
    n: Annotated[Optional[int], typer.Option("--n", "-n", help="Noise draws shared by every model (default 300 points, 24 images).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise (and of the ancestral sampler).")] = 0,
    steps: Annotated[str, typer.Option(help="Euler step counts to precompute, comma-separated.")] = "1,2,4,8,100",
    adaptive: Annotated[bool, typer.Option("--adaptive/--no-adaptive", help="Also precompute the adaptive dopri5 solve.")] = True,
    ancestral_steps: Annotated[int, typer.Option(help="Diffusion models: steps of the ancestral sampler (0: leave it out).")] = 100,
    max_frames: Annotated[int, typer.Option(help="States kept per solve (evenly spread).")] = 51,
    use_ema: Annotated[bool, typer.Option("--use-ema/--no-ema", help="Use the EMA weights (default) or the raw ones.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing page.")] = False,
):
    """Write one HTML page (no server, no network) showing how each model carries the same
    noise to data: a t slider, play/pause, model and sampler choice, metrics beside the plot."""
    if ancestral_steps < 0:
        raise typer.BadParameter(f"must be >= 0, got {ancestral_steps}", param_hint="--ancestral-steps")
    con = plain_console()
    with con.status("solving every model with every sampler"):
        page, data = api.explore(ckpt, out, overwrite=overwrite, n=n, seed=seed,
                                 choices=_choices(steps, adaptive),
                                 ancestral_steps=ancestral_steps or None, use_ema=use_ema,
                                 max_frames=max_frames)
    con.print(summary_table(data))
    con.print(f"wrote {page} ({page.stat().st_size / 1e6:.2f} MB, {len(data['models'])} models x "
              f"{len(data['choices'])} samplers); open it in a browser")
