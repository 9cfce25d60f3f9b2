"""rectflow run: train -> couple -> reflow -> couple -> reflow -> distill -> compare."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from .console import plain_console
from rich.table import Table
from rich.text import Text

from rectflow import api
from rectflow.api import PRESETS

from .compare import print_result
from .options import Threads, use_threads
from .progress import ProgressCallback, console

UNITS = {"pairs1": "pairs", "pairs2": "pairs", "compare": "unit"}


class StageProgress:
    """One progress bar per stage, opened and closed on the pipeline's stage events."""

    def __init__(self):
        self.bar: ProgressCallback | None = None

    def __call__(self, e: dict) -> None:
        if e.get("event") != "stage":
            if self.bar is not None:
                self.bar(e)
            return
        name, status = e["stage"], e["status"]
        if status == "start":
            self.bar = ProgressCallback(name, UNITS.get(name, "step")).__enter__()
            if e.get("resumed"):
                console.print(Text(name, style="bold") + ": continuing the interrupted stage")
        elif status == "done":
            self.close()
            console.print(Text(name, style="bold") + f" done in {e['seconds']:.1f} s")
        else:
            console.print(Text(name, style="bold") + " already complete, skipped")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def timing_table(record: dict) -> Table:
    t = Table(title="wall-clock time per stage", title_justify="left")
    for col in ("stage", "status", "seconds"):
        t.add_column(col, justify="right" if col == "seconds" else "left")
    for name, s in record["stages"].items():
        sec = s.get("seconds")
        t.add_row(name, s["status"], "-" if sec is None else f"{sec:.1f}")
    t.add_row("total", "", f"{record.get('total_seconds', 0):.1f}")
    return t


def run(
    preset: Annotated[Optional[str], typer.Option(help=f"Recipe: {', '.join(PRESETS)} (default: by the kind of --data, moons for vectors and digits for images; moons without --data).", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(help="Data of every stage, over the preset's: a dataset name, an image folder, or a .npy/.npz/.safetensors [N, D] file.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default checkpoints/<preset>-run, or checkpoints/<data's name>-run for --data without --preset).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file overriding any stage option: tables train, couple, reflow, distill, compare (e.g. train_steps = 500 in the train table), top-level data, model.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Local root of mnist/cifar10 data.")] = None,
    download: Annotated[bool, typer.Option(help="Allow downloading mnist/cifar10 into --data-root.")] = False,
    threads: Threads = None,
):
    """Run the whole reflow pipeline; rerun the same command to continue an interrupted run."""
    use_threads(threads)
    out = out or api.default_out("run", data, preset=preset)
    overrides = {}
    if data_root is not None:
        overrides["data_root"] = str(data_root.resolve())
    if download:
        overrides["download"] = True
    progress = StageProgress()
    try:
        record = api.run(preset, out, data=data, config=config, overrides=overrides,
                         callback=progress)
    finally:
        progress.close()
    if record.get("compare") is None:   # a non-main process of a distributed run
        return
    print_result(record["compare"], out / "compare")
    plain_console().print(timing_table(record))
    plain_console().print(f"resolved config: {out / 'resolved.json'}; timings: {out / 'run.json'}")
