"""Entry point of the ``rectflow`` console script."""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from .animate import animate
from .compare import compare
from .couple import couple
from .errors import run
from .eval import evaluate
from .explore import explore
from .options import finite_floats
from .reflow import distill, reflow
from .run import run as run_pipeline
from .sample import sample
from .train import train
from .transport import interpolate, invert, translate

app = typer.Typer(
    name="rectflow",
    help="Rectified flows, reflow and distillation: train -> couple -> reflow -> distill.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from rectflow import __version__
        print(f"rectflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False):
    """Rectified flows, reflow and distillation: train -> couple -> reflow -> distill."""
for fn in (train, sample, couple, reflow, distill, compare, animate, explore, invert, translate,
           interpolate):
    app.command(name=fn.__name__)(finite_floats(fn))
app.command(name="eval")(finite_floats(evaluate))
app.command(name="run")(finite_floats(run_pipeline))


def main(argv: list[str] | None = None) -> int:
    code = run(typer.main.get_command(app), argv)
    sys.exit(code)


if __name__ == "__main__":
    main()
