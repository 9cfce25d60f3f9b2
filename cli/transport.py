"""rectflow invert / translate / interpolate: a flow used as a map between its source and data."""

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from .console import plain_console
from rich.table import Table

from rectflow import api
from rectflow.api import plural
from rectflow.options import SOLVERS

from .options import Ckpt, Overwrite, UseEma

Inputs = Annotated[List[Path], typer.Option("--input", "-i", help="Input file(s) or folder(s): arrays (.npy/.npz/.safetensors, [N, ...] in the distribution's own units) or images.")]
Solver = Annotated[str, typer.Option(help=f"ODE solver: {', '.join(SOLVERS)}.")]
Steps = Annotated[Optional[int], typer.Option(help="Solver steps (default: what the model is for).")]
Rtol = Annotated[float, typer.Option(help="dopri5 relative tolerance.")]
Atol = Annotated[float, typer.Option(help="dopri5 absolute tolerance.")]


def invert(
    ckpt: Ckpt,
    input: Annotated[Path, typer.Option("--input", "-i", help="Data to invert: an array file [N, ...] in the data's own units, or an image.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npy of the source points (the source's own units).")],
    solver: Solver = "rk4",
    steps: Annotated[int, typer.Option(help="Solver steps of the written inversion.")] = 32,
    rtol: Rtol = 1e-5,
    atol: Atol = 1e-5,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Measure the round trip (invert, generate back) for a few solvers and step counts.")] = True,
    use_ema: UseEma = True,
    overwrite: Overwrite = False,
):
    """Map data back to its source points by solving the flow backwards (t from 1 to 0)."""
    r = api.invert(ckpt, input, out, solver=solver, steps=steps, rtol=rtol, atol=atol,
                         check=check, use_ema=use_ema, overwrite=overwrite)
    con = plain_console()
    con.print(f"wrote {r.n} source points ({r.source}) to {r.out} ({r.solver}, "
              f"{plural(r.steps, 'step')} backwards, {r.nfe:g} NFE per point)")
    if r.round_trip:
        t = Table(title=f"round trip (invert, then generate) on {r.round_trip_n} inputs: "
                        "RMS error per coordinate, model units", title_justify="left")
        for col in ("solver", "steps", "NFE", "mean", "worst"):
            t.add_column(col, justify="right")
        for row in r.round_trip:
            t.add_row(row["solver"], str(row["steps"] or "adaptive"), f"{row['nfe']:.4g}",
                      f"{row['rms_mean']:.3g}", f"{row['rms_max']:.3g}")
        con.print(t)


def translate(
    ckpt: Ckpt,
    input: Inputs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: one file per input, same name and format, and translate-grid.png.")],
    solver: Solver = "euler",
    steps: Steps = None,
    rtol: Rtol = 1e-5,
    atol: Atol = 1e-5,
    use_ema: UseEma = True,
    overwrite: Overwrite = False,
):
    """Map inputs from the flow's source to its data (e.g. digits 3 -> 7), keeping file names."""
    r = api.translate(ckpt, input, out, solver=solver, steps=steps, rtol=rtol, atol=atol,
                      use_ema=use_ema, overwrite=overwrite)
    plain_console().print(f"translated {plural(r.n, 'point')} in {plural(len(r.files), 'file')} "
                          f"into {r.out} ({r.solver}, {plural(r.steps, 'step')}, {r.nfe:g} "
                          f"NFE); picture {r.picture}")


def interpolate(
    ckpt: Ckpt,
    input: Inputs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .png (outputs as .npy beside it).")],
    frames: Annotated[int, typer.Option(help="Points on the line between the two source points.")] = 9,
    solver: Solver = "euler",
    steps: Steps = None,
    use_ema: UseEma = True,
    overwrite: Overwrite = False,
):
    """Map the line between two source points (two inputs, or one with two rows)."""
    r = api.interpolate(ckpt, input, out, frames=frames, solver=solver, steps=steps,
                        use_ema=use_ema, overwrite=overwrite)
    plain_console().print(f"wrote {r.out} and {r.outputs} ({r.frames} frames, {r.solver}, "
                          f"{plural(r.steps, 'step')})")
