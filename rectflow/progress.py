"""Progress shown by default: the Python API's bars, and the plain lines of a run whose output
goes to a file or CI (used by the CLI too).

:class:`Progress` is the callback the API uses unless given ``callback=`` or
``progress=False``: one ``tqdm.auto`` bar per phase (training, then its evaluation; a widget in
Jupyter when ipywidgets is installed, text otherwise) on stderr, each note (threads chosen,
batch fitted...) and each stage's result as one line. Written to something that is not a
terminal or a notebook, the bar becomes :class:`PlainLines`: one line per phase at intervals
with the run's median rate, and one when it ends. Every event also goes to the ``rectflow``
logger, as before.
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, TextIO

LINE_EVERY = 30.0   # seconds between two plain progress lines of one phase


def interactive(stream: TextIO) -> bool:
    """A terminal, or a notebook's output (where a bar redraws in place)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


class PlainLines:
    """One phase of progress (a training run, an evaluation) as plain lines: at most one per
    ``every`` seconds, and one when the phase is done; the rate is the median of the run's
    reported rates, not the last window's."""

    def __init__(self, label: str, total: int | None, start: int = 0,
                 write: Callable[[str], None] = print, every: float = LINE_EVERY,
                 clock=time.monotonic):
        self.label, self.total, self.done, self.write = label, total, start, write
        self.every, self.clock = every, clock
        self.t0 = self.last = clock()
        self.rates: list[float] = []
        self.info, self.closed = "", False

    def update(self, done: int, rate: float | None = None, info: str = "") -> None:
        self.done, self.info = done, info
        if rate is not None:
            self.rates.append(rate)
        if self.total is not None and done >= self.total:
            self.close()
        elif self.clock() - self.last >= self.every:
            self.last = self.clock()
            self.write(self.line())

    def line(self) -> str:
        of = f"/{self.total} ({self.done / self.total:.0%})" if self.total else ""
        parts = [f"{self.label} {self.done}{of}"]
        if self.info:
            parts.append(self.info)
        if self.rates:
            parts.append(f"{statistics.median(self.rates):,.0f} samples/s (median)")
        parts.append(f"{_clock(self.clock() - self.t0)} elapsed")
        return "  ".join(parts)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.write(self.line())


class Progress:
    """The API's default callback: bars (or plain lines) on ``stream`` (default stderr),
    notes and results as lines; every event is also passed to ``log``."""

    def __init__(self, label: str, log: Callable[[dict], None] | None = None,
                 stream: TextIO | None = None):
        self.label, self.log, self._stream = label, log, stream
        self.bar = None
        self.plain: PlainLines | None = None

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr   # looked up late: a notebook may swap it

    def say(self, text: str) -> None:
        if self.bar is not None:
            from tqdm.auto import tqdm
            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def __call__(self, e: dict) -> None:
        if self.log is not None:
            self.log(e)
        kind = e.get("event")
        if kind == "note":
            self.say(e["text"])
        elif kind == "start":
            self._close()
            self._open(e.get("label", self.label), e.get("steps", e.get("total")),
                       e.get("step", 0))
        elif kind == "step":
            info = f"loss {e['loss']:.4f}"
            self._update(e["step"], info, e["samples_per_s"])
        elif kind == "progress":
            self._update(e["done"], e.get("info", ""))

    def _open(self, label: str, total, start: int) -> None:
        if interactive(self.stream):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc=label, file=self.stream,
                            dynamic_ncols=True, leave=True)
        else:
            self.plain = PlainLines(label, total, start, write=self.say)

    def _update(self, done: int, info: str, rate: float | None = None) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            extra = f"{rate:,.0f} samples/s" if rate is not None else ""
            self.bar.set_postfix_str("  ".join(p for p in (info, extra) if p))
        elif self.plain is not None:
            self.plain.update(done, rate, info)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.plain is not None:
            self.plain.close()
            self.plain = None

    def end(self, text: str | None) -> None:
        """Close the bars and print the stage's result line."""
        self._close()
        if text:
            self.say(text)


def plural(n: int, word: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def report_line(report) -> str:
    """An evaluation report's headline: its lead metric at each step count, the sample size
    and the metric's noise floor (two draws of the data itself at that size), so a number
    reads against what the measurement can tell apart."""
    m = report.primary_metric
    cells = [f"{plural(int(v['steps']), 'step')} {v[m]:.4g}" for v in report.quality.values()
             if m in v]
    if not cells:
        return ""
    floor = (report.floors or {}).get(m)
    tail = f" (n={report.n}" + (f"; floor {floor:.4g}" if floor is not None else "") + ")"
    return f"{m.upper()} " + ", ".join(cells) + tail


def model_line(path) -> str:
    """The result of a training stage in one line: where, how far, and its evaluation."""
    from pathlib import Path

    from .records import EvalReport, RunCard
    card = RunCard.read(path)
    total = card.train.get("train_steps", card.steps_done)
    state = "" if card.complete else f" of {total}, not complete"
    line = f"{card.stage} done: {path} ({plural(card.steps_done, 'step')}{state})"
    report = Path(path) / EvalReport.FILENAME
    if report.is_file():
        line += "; " + report_line(EvalReport.read(report))
    return line
