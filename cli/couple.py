"""rectflow couple: solve a checkpoint's ODE from seeded noise into a coupling dataset."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from rectflow import stages
from rectflow.pairgen import CoupleConfig
from rectflow.solvers import METHODS

from .options import Ckpt, Overwrite, UseEma
from .progress import ProgressCallback
from .summary import path_table

D = CoupleConfig()


def couple(
    ckpt: Ckpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of the coupling dataset.")],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of (noise, sample) pairs (write -n under torchrun, whose own options swallow --n).")] = D.n,
    solver: Annotated[str, typer.Option(help=f"ODE solver: {', '.join(METHODS)}.")] = D.solver,
    steps: Annotated[int, typer.Option(help="Steps of a fixed-grid solver.")] = D.steps,
    rtol: Annotated[float, typer.Option(help="dopri5 relative tolerance.")] = D.rtol,
    atol: Annotated[float, typer.Option(help="dopri5 absolute tolerance.")] = D.atol,
    seed: Annotated[int, typer.Option(help="Seed of the noise (pairs are byte-identical for a seed).")] = D.seed,
    batch_size: Annotated[int, typer.Option(help="Trajectories solved at once, in whole --eval-chunk's (memory only; does not change the pairs).")] = D.batch_size,
    shard_size: Annotated[int, typer.Option(help="Pairs per shard file.")] = D.shard_size,
    eval_chunk: Annotated[int, typer.Option(help="Rows per model call (fixed so the pairs do not depend on --batch-size).")] = D.eval_chunk,
    metrics_subsample: Annotated[Optional[int], typer.Option(help="Track path metrics on the first N pairs only (default: all).")] = None,
    ot_subsample: Annotated[int, typer.Option(help="Pairs (the first by index) on which the exact OT cost is computed.")] = D.ot_subsample,
    use_ema: UseEma = True,
    overwrite: Overwrite = False,
):
    """Write pairs (x0, z1) for reflow/distill; rerun the same command to resume."""
    cfg = CoupleConfig(n=n, solver=solver, steps=steps, rtol=rtol, atol=atol, seed=seed,
                       batch_size=batch_size, shard_size=shard_size, eval_chunk=eval_chunk,
                       use_ema=use_ema, metrics_subsample=metrics_subsample,
                       ot_subsample=ot_subsample)
    complete = []
    with ProgressCallback("couple", "pairs") as bar:
        def callback(event: dict) -> None:
            if event.get("event") == "complete":
                complete.append(True)
            bar(event)
        manifest = stages.couple(ckpt, out, cfg, overwrite=overwrite, callback=callback)
    if manifest is not None:   # main process only
        con = Console()
        state = "already complete, nothing written" if complete else "written"
        con.print(f"{out}: {manifest['n']} pairs in {len(manifest['shards'])} shards ({state}), "
                  f"{manifest['nfe']} NFE per pair")
        con.print(path_table("coupling metrics", {**manifest["metrics"], **{
            "solver": manifest["solver"]["method"], "steps": manifest["solver"].get("steps")}}))
