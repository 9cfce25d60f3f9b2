"""The CLI's consoles: rich on a terminal; on a file or CI (not a terminal), lines as they are,
never wrapped at 80 columns (tables keep their natural width)."""
from __future__ import annotations

import sys

from rich.console import Console as RichConsole

WIDE = 10_000   # "no wrapping": wider than any table or line rectflow prints


def Console(stderr: bool = False, **kw) -> RichConsole:   # noqa: N802 - rich's name
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        kw.setdefault("width", WIDE)
        kw.setdefault("soft_wrap", True)
    return RichConsole(stderr=stderr, **kw)
