"""rectflow couple: solve a checkpoint's ODE from seeded noise into a coupling dataset."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from .console import plain_console

from rectflow import api
from rectflow.api import plural
from rectflow.options import COUPLE

from .options import (Ckpt, ConfigFile, Overwrite, Threads, option_params, use_threads,
                      with_options)
from .progress import ProgressCallback
from .summary import path_table


@with_options(option_params(COUPLE, section="couple"))
def couple(
    options: dict,
    ckpt: Ckpt,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder of the coupling dataset (default <ckpt>-pairs beside the model).")] = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
    threads: Threads = None,
):
    """Write pairs (x0, z1) for reflow/distill; rerun the same command to resume.
    (Under torchrun write -n, not --n: torchrun's own parser takes --n.)"""
    use_threads(threads)
    out = out or api.default_out("couple", ckpt)
    complete = []
    with ProgressCallback("couple", "pairs") as bar:
        def callback(event: dict) -> None:
            if event.get("event") == "complete":
                complete.append(True)
            bar(event)
        manifest = api.couple(ckpt, out, config=config, overwrite=overwrite, callback=callback,
                              **options)
    if manifest is not None:   # main process only
        con = plain_console()
        state = "already complete, nothing written" if complete else "written"
        con.print(f"{out}: {plural(manifest.n, 'pair')} in {plural(len(manifest.shards), 'shard')} "
                  f"({state}), "
                  f"{manifest.nfe:g} NFE per pair ({manifest.solver['method']})")
        m = manifest.metrics
        con.print(path_table(f"coupling metrics (straightness over {m.get('n', manifest.n)} "
                             f"pairs; transport and OT cost on the first {m['ot_subsample']})",
                             {**m, "transport_cost": m.get("transport_cost_subsample",
                                                           m["transport_cost"]),
                              "n_paths": m["ot_subsample"],
                              "solver": manifest.solver["method"],
                              "steps": manifest.solver.get("steps", "")}))
