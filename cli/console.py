"""The only way cli/ makes a Console: text is printed as it is, never read as Rich markup or
emoji codes (a path or a model name like ``runs/[/x]`` or ``:smile:`` prints verbatim and
cannot crash the printer after the work is done; styles go as ``style=``/``Text``). On a file or
CI (not a terminal) lines are never wrapped at 80 columns (tables keep their natural width)."""
from __future__ import annotations

import sys

from rich.console import Console as RichConsole

WIDE = 10_000   # "no wrapping": wider than any table or line rectflow prints


def plain_console(stderr: bool = False, **kw) -> RichConsole:
    kw.setdefault("markup", False)
    kw.setdefault("emoji", False)
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        kw.setdefault("width", WIDE)
        kw.setdefault("soft_wrap", True)
    return RichConsole(stderr=stderr, **kw)
