"""Turn known failures into one line on stderr and an exit code."""
from __future__ import annotations

import os
import sys

import click

from rectflow.errors import TrainingDiverged, UserError

try:  # typer >= 0.26 vendors its own copy of click
    from typer._click import exceptions as _typer_click
    _USAGE = (click.UsageError, _typer_click.UsageError)
    _CLICK = (click.ClickException, _typer_click.ClickException)
    _ABORT = (click.exceptions.Abort, _typer_click.Abort if hasattr(_typer_click, "Abort")
              else click.exceptions.Abort)
except ImportError:  # older typer: plain click
    _USAGE, _CLICK, _ABORT = (click.UsageError,), (click.ClickException,), (click.exceptions.Abort,)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _quiet_unless_main() -> None:
    """Under ``torchrun``/``accelerate launch`` every process runs the same command; only global
    rank 0 prints tables and summaries, so a 2-process run does not show everything twice.
    (Progress comes from library events, which only the main process emits.)"""
    if int(os.environ.get("RANK", "0") or 0) > 0:
        sys.stdout = open(os.devnull, "w")


def run(command, argv: list[str] | None) -> int:
    """Run the click command; known errors -> one line + exit 2 (3 for a diverged run).
    ``RECTFLOW_DEBUG=1`` re-raises them with their traceback."""
    debug = os.environ.get("RECTFLOW_DEBUG") == "1"
    _quiet_unless_main()
    try:
        rv = command.main(args=argv, prog_name="rectflow", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except _USAGE as e:
        if type(e).__name__ == "NoArgsIsHelpError":   # bare `rectflow`: help is printed
            return 2
        print(f"rectflow: error: {_one_line(e.format_message())} (see --help)", file=sys.stderr)
        return 2
    except _CLICK as e:
        print(f"rectflow: error: {_one_line(e.format_message())}", file=sys.stderr)
        return 2
    except (UserError, TrainingDiverged) as e:
        if debug:
            raise
        print(f"rectflow: error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, UserError) else 3
    except _ABORT:
        print("rectflow: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("rectflow: interrupted", file=sys.stderr)
        return 130
