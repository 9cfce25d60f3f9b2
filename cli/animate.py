"""rectflow animate: a GIF of particles flowing from noise to data, one panel per round."""

from pathlib import Path
from typing import Annotated

import typer
from .console import plain_console

from rectflow import api

from .progress import ProgressCallback


def animate(
    ckpt: Annotated[list[Path], typer.Option("--ckpt", help="Checkpoint folder; repeat for one panel each, or give one run folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .gif file.")] = Path("flow.gif"),
    n: Annotated[int, typer.Option("--n", "-n", help="Number of particles.")] = 500,
    steps: Annotated[int, typer.Option(help="Euler steps of each flow (fewer if a model is distilled).")] = 60,
    frames: Annotated[int, typer.Option(help="Frames of the animation.")] = 40,
    fps: Annotated[int, typer.Option(help="Frames per second.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the particles' noise.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
):
    """Animate 2-D flows (matplotlib frames, written as a GIF by PIL; no ffmpeg)."""
    with ProgressCallback("animate", "frame") as cb:
        path = api.animate(ckpt, out, n=n, seed=seed, steps=steps, frames=frames, fps=fps,
                        callback=cb, overwrite=overwrite)
    plain_console().print(f"wrote {path} ({frames} frames, {len(ckpt)} input folder(s))")
