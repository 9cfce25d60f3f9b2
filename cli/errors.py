"""Turn known failures into one line on stderr and an exit code.

Exit codes: 2 for anything the user can fix (a wrong option, a missing file, an output that
exists, not enough memory or disk), 3 for a training run that diverged, 130/143 for Ctrl-C /
SIGTERM after the stage saved what it had (the line says how to resume).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys

import click

from rectflow.errors import (OptionError, PlanMismatch, StageInterrupted, TrainingDiverged,
                             UserError)

try:  # typer >= 0.26 vendors its own copy of click
    from typer._click import exceptions as _typer_click
    _USAGE = (click.UsageError, _typer_click.UsageError)
    _CLICK = (click.ClickException, _typer_click.ClickException)
    _ABORT = (click.exceptions.Abort, _typer_click.Abort if hasattr(_typer_click, "Abort")
              else click.exceptions.Abort)
except ImportError:  # older typer: plain click
    _USAGE, _CLICK, _ABORT = (click.UsageError,), (click.ClickException,), (click.exceptions.Abort,)

try:
    from safetensors import SafetensorError
    _SAFETENSORS: tuple = (SafetensorError,)
except ImportError:
    _SAFETENSORS = ()

# library words (Python terms) -> the flags that set them
_FLAGS = [(r"^out ", "--out "), (r"\bpass overwrite\b", "pass --overwrite"), (r"\bwithout resume\b", "without --resume"),
          (r"\bor resume to\b", "or --resume to"), (r"\bpass init\b", "pass --init"),
          (r"\bpass model=", "pass model= (Python API)")]


# a flag that belongs to another step of the pipeline: what to run instead
_OTHER_STEP = {
    ("reflow", "--ckpt"): "reflow trains on pairs: run `rectflow couple --ckpt {0} --out PAIRS` "
                          "then `rectflow reflow --pairs PAIRS`",
    ("distill", "--ckpt"): "distill trains on pairs: run `rectflow couple --ckpt {0} --out "
                           "PAIRS` then `rectflow distill --pairs PAIRS`",
}


def _other_step(argv: list[str]) -> str | None:
    """The hint of :data:`_OTHER_STEP` for this command line, if one applies."""
    command = next((a for a in argv if not a.startswith("-")), "")
    for i, a in enumerate(argv):
        flag, _, value = a.partition("=")
        if (command, flag) in _OTHER_STEP:
            value = value or (argv[i + 1] if i + 1 < len(argv) else "MODEL")
            return _OTHER_STEP[command, flag].format(value)
    return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cli_words(e: UserError) -> str:
    if isinstance(e, OptionError):
        return e.for_cli()
    text = str(e)
    if isinstance(e, PlanMismatch):
        from rectflow.options import COUPLE, table_of
        flags = table_of(COUPLE)
        text = e.text([flags[n].cli_flag if n in flags else n for n in e.names])
    for pattern, flag in _FLAGS:
        text = re.sub(pattern, flag, text)
    return text


def _quiet_unless_main() -> None:
    """Under ``torchrun``/``accelerate launch`` every process runs the same command; only global
    rank 0 prints tables and summaries. A stray RANK without a WORLD_SIZE > 1 is not a launch."""
    try:
        rank = int(os.environ.get("RANK", "0") or 0)
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return
    if world > 1 and rank > 0:
        sys.stdout = open(os.devnull, "w")


def _resume_argv(argv: list[str] | None) -> list[str]:
    """The command that continues an interrupted run: the same one, with --resume for the
    training stages (``run`` and ``couple`` continue when rerun as they are)."""
    import shlex
    args = list(sys.argv[1:] if argv is None else argv)
    reruns = bool(args) and args[0] in ("run", "couple")
    args = [a for a in args if a not in ("--overwrite", "--resume")]
    return [shlex.quote(a) for a in args] + ([] if reruns else ["--resume"])


@contextlib.contextmanager
def _resource_errors(what: str):
    """:func:`rectflow.io.os_errors`, imported only once something failed: rectflow.io imports
    torch, which ``rectflow --help`` and ``--version`` do without."""
    try:
        yield
    except (OSError, MemoryError, RuntimeError):   # torch's OutOfMemoryError is a RuntimeError
        from rectflow.io import os_errors
        with os_errors(what):
            raise


def run(command, argv: list[str] | None) -> int:
    """Run the click command; known errors -> one line + exit code (see the module docstring).
    ``RECTFLOW_DEBUG=1`` re-raises them with their traceback."""
    debug = os.environ.get("RECTFLOW_DEBUG") == "1"
    _quiet_unless_main()
    name = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")),
                "")
    try:
        with _resource_errors(f"rectflow {name}".strip()):   # disk full, out of memory...
            if name and name not in ("--help", "--version"):
                from rectflow.machine.threads import default_threads
                default_threads()   # an absurd OMP_NUM_THREADS: one line, whatever the command
            rv = command.main(args=argv, prog_name="rectflow", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except _USAGE as e:
        if type(e).__name__ == "NoArgsIsHelpError":   # bare `rectflow`: help is printed
            return 2
        hint = _other_step(list(sys.argv[1:] if argv is None else argv))
        if hint:
            print(f"rectflow: error: {hint}", file=sys.stderr)
            return 2
        print(f"rectflow: error: {_one_line(e.format_message())} (see --help)", file=sys.stderr)
        return 2
    except _CLICK as e:
        print(f"rectflow: error: {_one_line(e.format_message())}", file=sys.stderr)
        return 2
    except _SAFETENSORS as e:   # a reader the library did not wrap: still the file's fault
        if debug:
            raise
        print(f"rectflow: error: a file is not a valid safetensors file ({_one_line(e)})",
              file=sys.stderr)
        return 2
    except (UserError, TrainingDiverged) as e:
        if debug:
            raise
        msg = _cli_words(e) if isinstance(e, UserError) else str(e)
        print(f"rectflow: error: {_one_line(msg)}", file=sys.stderr)
        return 2 if isinstance(e, UserError) else 3
    except StageInterrupted as e:
        if debug:
            raise
        args = list(sys.argv[1:] if argv is None else argv)
        reruns = bool(args) and args[0] in ("run", "couple")
        hint = ("; finished shards and stages are kept" if reruns else "") + \
            ("; to continue, rerun: rectflow " + " ".join(_resume_argv(argv))
             if e.step or reruns else "")
        print(f"rectflow: {_one_line(e)}{hint}", file=sys.stderr)
        return e.exit_code
    except _ABORT:
        print("rectflow: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("rectflow: interrupted; what was finished is kept (a coupling dataset keeps its "
              "finished shards): rerun the same command to continue", file=sys.stderr)
        return 130
