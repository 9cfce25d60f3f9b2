"""How a stage writes its output folder: checked first, locked against other writers, and
with ``overwrite`` written beside the old run and swapped in when it completes."""
from __future__ import annotations

from pathlib import Path

from ..errors import StageInterrupted, UserError
from .folders import (check_output as _check, ensure_output, sibling, staged_output,
                      writable_parent)
from .lock import FolderLock
from .remove import written


def check_output(out: str | Path, kind: str, inputs=(), overwrite: bool = False,
                 resume: bool = False) -> Path:
    """Refuse an output that cannot be written without risk (see :mod:`rectflow.io`);
    touches nothing, so a refused run leaves earlier output as it was."""
    return _check(out, inputs=[p for p in inputs if p is not None], overwrite=overwrite,
                  kind=kind, resume=resume)


def check_files(outputs, inputs=(), overwrite: bool = False) -> list[Path]:
    """Every file a command will write, declared and checked before anything is written: none
    is, contains or lies inside an input or anything an input names (a model folder, its
    teacher, pairs or data, transitively), none is a folder or a link, none exists unless
    ``overwrite``, and each can be created. Touches nothing; returns the paths."""
    from .folders import _real, _refuse_inputs
    outputs = [Path(p) for p in outputs]
    inputs = [p for p in inputs if p is not None]
    for out in outputs:
        _refuse_inputs(out, _real(out), inputs)
        if out.is_dir() or out.is_symlink():
            raise UserError(f"{out} is a folder or a link; name a file")
        if out.exists() and not overwrite:
            raise UserError(f"{out} already exists; pass overwrite to replace it")
        if out.exists() and not written(out):   # overwrite replaces only what rectflow wrote
            raise UserError(f"{out} already exists and rectflow did not write it; refusing to "
                            "replace it: move it away or choose another name")
        writable_file(out)
    return outputs


def writable_file(path: Path) -> None:
    """A file can be created at ``path``: its nearest existing ancestor is a writable folder."""
    writable_parent(path)


def write_stage(out: Path, kind: str, overwrite: bool, resume: bool, acc, run):
    """``run(folder)`` with ``out`` locked against other writers. With ``overwrite`` the new
    run is written beside the old one and swapped in when it completes (or when it is
    interrupted, so it can be resumed); until then the old run is intact."""
    main = acc.is_main_process
    with FolderLock(out, is_main=main):
        if overwrite and not resume:
            if not main:
                acc.wait_for_everyone()
                return run(sibling(out, "new"))
            with staged_output(out, kind, overwrite=True,
                                  commit_on=(StageInterrupted,)) as work:
                acc.wait_for_everyone()
                result = run(work)
            return result
        if main:
            ensure_output(out, kind, resume=resume)
        acc.wait_for_everyone()
        return run(out)
