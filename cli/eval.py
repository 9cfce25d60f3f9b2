"""rectflow eval: sample quality at several step counts, a dopri5 reference, path metrics."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from rectflow import api
from rectflow.options import EVAL

from .options import Ckpt, Threads, option_params, use_threads, with_options
from .progress import ProgressCallback
from .summary import print_eval

FeaturesDir = Annotated[Optional[Path], typer.Option(help="Cache of the FD feature networks (default <checkpoints root>/.features).")]
evaluation_options = with_options(option_params(EVAL, section="compare"))


@evaluation_options
def evaluate(
    options: dict,
    ckpt: Ckpt,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="A .json file to write the report to (default: the model folder's own eval.json, refreshed).")] = None,
    features_dir: FeaturesDir = None,
    recompute: Annotated[bool, typer.Option(help="Ignore a stored report with the same arguments and weights.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report made with other arguments or weights.")] = False,
    threads: Threads = None,
):
    """Evaluate a checkpoint: quality at each step count, an adaptive reference, straightness."""
    use_threads(threads)
    with ProgressCallback("eval", "part") as cb:
        ev = api.evaluate(ckpt, out=out or ckpt, features_dir=features_dir,
                          reuse=not recompute, callback=cb, overwrite=overwrite, **options)
    print_eval(ev, ev.file)
