"""rectflow: rectified flows, reflow and distillation on Accelerate.

The public API (see :mod:`rectflow.api`)::

    import rectflow
    flow = rectflow.train(data="moons", train_steps=2000)
    samples = flow.sample(1000, steps=1)

The conventions (time direction, shapes, names) are documented in :mod:`rectflow.core.path`.
Importing rectflow changes no global state and imports neither the CLI nor torch until an
API function is used.
"""
from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__", "Flow", "load", "train", "reflow", "distill", "evaluate", "compare"]

# From a source checkout (``python -m pytest`` in the repository root), the top-level ``cli/``
# folder is where ``rectflow.cli`` lives; an installed rectflow has it as a subpackage. Only the
# search path is extended here: nothing is imported.
import os as _os

_here = _os.path.dirname(__file__)
if not _os.path.isdir(_os.path.join(_here, "cli")) and \
        _os.path.isfile(_os.path.join(_here, "..", "cli", "__init__.py")):
    __path__.append(_os.path.join(_here, ".."))   # noqa: F821 - set by the import system


def __getattr__(name: str):
    if name in ("Flow", "load", "train", "reflow", "distill", "evaluate", "compare"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'rectflow' has no attribute {name!r}")
