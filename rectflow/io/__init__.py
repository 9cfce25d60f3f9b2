"""Safety of everything rectflow writes: no command can lose a user's data.

* :mod:`.folders`: ownership markers, :func:`check_output` before anything is written,
  :func:`staged_output` (replace a run only once the new one succeeded), :func:`ensure_output`.
* :mod:`.members`: :func:`plain_member` for names read from a pairs folder.
* :mod:`.lock`: :class:`FolderLock`, one writer per output folder.
* :mod:`.interrupts`: :func:`graceful_interrupts`, SIGTERM/SIGINT at a step boundary.
* :mod:`.resources`: :func:`check_fits` for memory estimates, :func:`os_errors` for OS errors.

The usual wiring of a stage writing folder ``out`` (main process only where noted)::

    out = check_output(out, inputs=[pairs], overwrite=overwrite, kind="model", resume=resume)
    with FolderLock(out, is_main=acc.is_main_process):
        if overwrite:                                    # main; others write sibling(out, "new")
            with staged_output(out, "model", overwrite=True) as work: run(work)
        else:
            run(ensure_output(out, "model", resume=resume))      # main, then a barrier
"""
from .folders import (MARKER, check_output, ensure_output, is_empty, is_owned, read_marker,
                      recover, sibling, staged_output, write_marker)
from .interrupts import Interrupts, graceful_interrupts
from .lock import FolderLock, holds_lock, lock_path
from .members import plain_member
from .resources import available_memory, check_fits, human_bytes, os_errors

__all__ = ["MARKER", "FolderLock", "Interrupts", "available_memory", "check_fits",
           "check_output", "ensure_output", "graceful_interrupts", "holds_lock", "human_bytes",
           "is_empty", "is_owned", "lock_path", "os_errors", "plain_member", "read_marker",
           "recover", "sibling", "staged_output", "write_marker"]
