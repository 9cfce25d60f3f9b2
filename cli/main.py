"""Entry point of the ``rectflow`` console script.

The commands' modules import torch (seconds, most of a GB), so they are imported only when a
command runs or its own --help is asked for: ``rectflow --help`` and ``rectflow --version``
answer from the table below (whose one-line helps a test keeps equal to the commands'
docstrings).
"""
from __future__ import annotations

import importlib
import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

# name -> (module in this package, function, its docstring's first line)
COMMANDS = {
    "train": ("train", "train", "Train a 1-rectified flow: regress v(x_t, t) onto x1 - x0 with "
              "fresh noise x0."),
    "sample": ("sample", "sample", "Sample from a trained flow; writes samples in the data's "
               "own units."),
    "couple": ("couple", "couple", "Write pairs (x0, z1) for reflow/distill; rerun the same "
               "command to resume."),
    "reflow": ("reflow", "reflow", "Train round k+1 on round k's pairs, starting from round "
               "k's weights."),
    "distill": ("reflow", "distill", "Distill to k steps: k Euler steps from x0 land on the "
                "paired z1."),
    "compare": ("compare", "compare", "Compare checkpoints: table, CSV, Markdown and pictures "
                "of paths straightening."),
    "animate": ("animate", "animate", "Animate 2-D flows (matplotlib frames, written as a GIF "
                "by PIL; no ffmpeg)."),
    "explore": ("explore", "explore", "Write one HTML page (no server, no network) showing how "
                "each model carries the same"),
    "invert": ("transport", "invert", "Map data back to its source points by solving the flow "
               "backwards (t from 1 to 0)."),
    "translate": ("transport", "translate", "Map inputs from the flow's source to its data "
                  "(e.g. digits 3 -> 7), keeping file names."),
    "interpolate": ("transport", "interpolate", "Map the line between two source points (two "
                    "inputs, or one with two rows)."),
    "eval": ("eval", "evaluate", "Evaluate a checkpoint: quality at each step count, an "
             "adaptive reference, straightness."),
    "run": ("run", "run", "Run the whole reflow pipeline; rerun the same command to continue "
            "an interrupted run."),
}


def load_command(name: str):
    """The click command of ``name``, built by typer from its function (imports its module)."""
    from .options import finite_floats   # every float flag refuses nan/inf
    module, attr, _ = COMMANDS[name]
    fn = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command(name=name)(finite_floats(fn))
    return typer.main.get_command(one)


class LazyGroup(TyperGroup):
    """Lists the commands from :data:`COMMANDS`; builds one only to run it (or show its help)."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        return TyperCommand(name, help=COMMANDS[name][2], short_help=COMMANDS[name][2])

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        return name, (load_command(name) if name in COMMANDS else cmd), rest


app = typer.Typer(
    name="rectflow", cls=LazyGroup,
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


def _one_line_warning(message, category, *_args, **_kw) -> str:
    return f"{category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> int:
    from .errors import run
    warnings.formatwarning = _one_line_warning   # a deprecation is one line, as errors are
    code = run(typer.main.get_command(app), argv)
    sys.exit(code)


if __name__ == "__main__":
    main()
