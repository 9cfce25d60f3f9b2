"""Rich progress for the library's callback events (main process only)."""
from __future__ import annotations

from .console import plain_console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

from rectflow.api import PlainLines, take_note

console = plain_console(stderr=True)   # progress bars
notes = plain_console()          # one-line notes (threads, batch chosen, resizes): stdout, so
                                 # stderr holds only the bars and, on failure, the one error line


class ProgressCallback:
    """Renders ``start``/``step``/``progress``/``save``/``evaluate`` events as a bar (a new
    one at each ``start``: training, then its evaluation) and prints ``note`` events.

    Usable as a context manager; the bar disappears into a final summary line. When stderr is
    not a terminal (a file, CI) each bar is plain lines instead: one at intervals with the
    run's median rate, and one when it ends."""

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
        self.plain: PlainLines | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.plain is not None:
            self.plain.close()
        if self.task is not None:   # started lazily, so a refused run prints nothing extra
            self.progress.stop()

    def _plain(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "start":
            if self.plain is not None:
                self.plain.close()
            self.plain = PlainLines(e.get("label", self.label), e.get("steps", e.get("total")),
                                    e.get("step", 0),
                                    write=lambda text: console.print(text, highlight=False))
        elif self.plain is None:
            return
        elif kind == "step":
            self.plain.update(e["step"], e["samples_per_s"], f"loss {e['loss']:.4f}")
        elif kind == "progress":
            self.plain.update(e["done"], info=e.get("info", ""))

    def __call__(self, e: dict) -> None:
        kind = e.get("event")
        pending = take_note()   # the thread policy, said once when work starts
        if pending:
            notes.print(pending, highlight=False)
        if kind == "note":   # one line the user should read (batch chosen, resize, threads)
            notes.print(e["text"], highlight=False)
            return
        if not console.is_terminal:
            return self._plain(e)
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
