"""Rich progress for the library's callback events (main process only)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

from rectflow.machine.threads import take_note

def plain_console(stderr: bool = False) -> Console:
    """The only way cli/ makes a Console: text is printed as it is, never read as Rich markup
    or emoji codes, so a path or a model name like ``runs/[/x]`` or ``:smile:`` prints
    verbatim and cannot crash the printer after the work is done. Styles are given as
    ``style=``/``Text``, never as markup in a string."""
    return Console(stderr=stderr, markup=False, emoji=False)


console = plain_console(stderr=True)   # progress bars
notes = plain_console()          # one-line notes (threads, batch chosen, resizes): stdout, so
                                 # stderr holds only the bars and, on failure, the one error line


class ProgressCallback:
    """Renders ``start``/``step``/``progress``/``save``/``evaluate`` events as a bar (a new
    one at each ``start``: training, then its evaluation) and prints ``note`` events.

    Usable as a context manager; the bar disappears into a final summary line."""

    def __init__(self, label: str, unit: str = "step"):
        self.label, self.unit = label, unit
        self.progress = Progress(TextColumn("{task.description}", style="bold", markup=False),
                                 BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[info]}", markup=False),
                                 TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=console,
                                 transient=False)
        self.task = None
        self.last: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.task is not None:   # started lazily, so a refused run prints nothing extra
            self.progress.stop()

    def __call__(self, e: dict) -> None:
        kind = e.get("event")
        pending = take_note()   # the thread policy, said once when work starts
        if pending:
            notes.print(pending, highlight=False)
        if kind == "note":   # one line the user should read (batch chosen, resize, threads)
            notes.print(e["text"], highlight=False)
            return
        if kind == "start":
            total = e.get("steps", e.get("total"))
            self.progress.start()
            if self.task is not None:   # a later phase (evaluation after training): new bar
                self.progress.stop_task(self.task)
            self.task = self.progress.add_task(e.get("label", self.label), total=total,
                                               completed=e.get("step", 0), info="")
        elif self.task is None:
            return
        elif kind == "step":
            self.last = e
            self.progress.update(self.task, completed=e["step"],
                                 info=f"loss {e['loss']:.4f}  {e['samples_per_s']:,.0f} samples/s")
        elif kind == "progress":
            self.progress.update(self.task, completed=e["done"], info=e.get("info", ""))
        elif kind == "evaluate":
            self.progress.update(self.task, info="evaluating…")
