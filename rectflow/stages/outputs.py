"""Where each verb writes when no output is given: the one rule, for the CLI and the API.

=========  ==================================================  ==============================
verb       default output                                      beside / inside
=========  ==================================================  ==============================
train      ``checkpoints/<data's name>/rf1``                   the working folder
couple     ``<model>-pairs``                                   beside the model folder
reflow     ``reflow/``                                         beside the pairs folder
distill    ``distill/``                                        beside the pairs folder
sample     ``<model>-samples.npy``                             beside the model folder
compare    ``compare/`` (one run folder given) else ``./compare``; ``compare-2``, ``-3``... when
           that exists and ``overwrite`` is not set, so nothing is replaced
run        ``checkpoints/<preset>-run``, or ``checkpoints/<data's name>-run`` for data given
           without a preset
=========  ==================================================  ==============================

``eval`` writes its report into the model folder (``eval.json``), not to a path of its own.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..options import OUTPUT_ROOT
from .presets import preset_for

ROOT = Path(OUTPUT_ROOT)
VERBS = ("train", "couple", "reflow", "distill", "sample", "compare", "run")


def _name(data) -> str:
    """A data set's name as a folder name: a built-in name, or a file's or folder's stem."""
    return Path(str(data).rstrip("/")).stem


def default_out(verb: str, of, *, preset: str | None = None, overwrite: bool = False) -> Path:
    """The output of ``verb`` when none is given. ``of`` is what the verb reads: the data
    (train, run), the model folder (couple, sample), the pairs folder (reflow, distill) or
    the list of model folders (compare)."""
    if verb == "train":
        return ROOT / _name(of) / "rf1"
    if verb in ("reflow", "distill"):
        return Path(of).parent / verb
    if verb == "couple":
        return Path(of).parent / f"{Path(of).name}-pairs"
    if verb == "sample":
        return Path(of).parent / f"{Path(of).name}-samples.npy"
    if verb == "compare":
        return _free_compare([Path(p) for p in of], overwrite)
    if verb == "run":
        if preset is None and of is not None:
            return ROOT / f"{_name(of)}-run"
        return ROOT / f"{preset or preset_for(of)}-run"
    raise UserError(f"no default output for {verb!r} (known: {', '.join(VERBS)})")


def _free_compare(models: list[Path], overwrite: bool) -> Path:
    """compare/ inside a run folder (else ./compare); when that exists (a finished `rectflow
    run` holds its own compare/) and overwrite is not set, the first free compare-N beside
    it, so the command works as written and nothing is replaced."""
    single = len(models) == 1 and not (models[0] / "config.json").is_file()
    base = models[0] / "compare" if single else Path("compare")
    if overwrite or not base.exists():
        return base
    return next(p for i in range(2, 10**6)
                if not (p := base.with_name(f"{base.name}-{i}")).exists())
