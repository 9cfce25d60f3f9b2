"""Sampling a model: ``sample_tensor`` (samples in model space, for the API and the stages)
and ``sample`` (the CLI stage: samples in the data's own units, a picture beside them)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .. import io, smoke
from ..records.checkpoint import Checkpoint
from ..records.outputs import SampleRecord
from ..data import Normalization
from ..data.images import UINT8_NORMALIZATION
from ..errors import UserError
from ..progress import plural
from ..core.seeding import noise
from ..objectives.diffusion import ancestral_samples, check_sampler
from ..core.seeding import generator
from ..data.sources import Source
from ..io.stage import check_files
from ..options import COUPLE, table_of
from ..analysis.figures import save_samples_picture
from ..core.guidance import sample_velocity
from ..core.solvers import solve
from ..io.files import write_npy


MAX_SAMPLE_BYTES_FRACTION = 0.5


def sample_tensor(velocity, shape: tuple[int, ...], n: int, *, steps: int,
                  solver: str = "euler", seed: int = 0, rtol: float = 1e-5,
                  atol: float = 1e-5, device: str | torch.device = "cpu",
                  source: dict | None = None, extras: dict | None = None):
    """``n`` samples in model space and the solver's Solution (for its NFE); from the run
    card's ``source`` (training split) when it has one, else from noise."""
    x0 = (noise(n, shape, seed, "sample-noise") if source is None else
          Source(source, shape).draw(n, generator(seed, "sample-noise"))).to(device)
    with torch.no_grad():
        return solve(velocity, x0, method=solver, steps=steps, rtol=rtol, atol=atol,
                     extras=extras)


def sample(ckpt_dir: str | Path, out: str | Path, *, n: int = 1000, steps: int | None = None,
           solver: str = "euler", seed: int = 0, use_ema: bool = True, rtol: float = 1e-5,
           atol: float = 1e-5, overwrite: bool = False,
           model: torch.nn.Module | None = None, sampler: str = "ode", classes=None,
           guidance: float = 1.0) -> SampleRecord:
    """Write ``n`` samples as ``.npy`` in the data's own units (images clipped to the data's
    range), and a picture beside it. ``sampler="ancestral"`` (diffusion models only) draws
    them with DDPM's stochastic sampler on ``steps`` steps instead of solving the ODE. A
    conditional model samples ``classes`` under classifier-free ``guidance`` (see
    :func:`rectflow.stages.sample.sample_labels`); their labels go to ``<out>.labels.npy``."""
    opts = table_of(COUPLE)
    n = smoke.tiny("samples", opts["n"].check(n))
    solver = opts["solver"].check(solver)
    check_sampler(sampler)
    ck = Checkpoint(ckpt_dir)
    steps = opts["steps"].check(int(steps if steps is not None else ck.card.sample["steps"]))
    rtol, atol = opts["rtol"].check(rtol), opts["atol"].check(atol)
    asked = out = Path(out)
    if out.suffix != ".npy":   # samples are always .npy: say so when the name changes
        out = out.with_suffix(out.suffix + ".npy") if out.suffix else out.with_suffix(".npy")
    renamed = (f"samples are written as .npy: {out}, not {asked}"
               if asked.suffix and out != asked else None)
    y, n = sample_labels(ck.card, classes, n)
    picture = out.with_suffix(".png")
    labels = out.with_suffix(".labels.npy")
    drawn = len(ck.shape) == 3 or tuple(ck.shape) == (2,)   # what save_samples_picture draws
    check_files([out, *([picture] if drawn else []), *([labels] if y is not None else [])],
                [ck.path], overwrite)
    io.check_fits(4 * n * math.prod(ck.shape) * 4, f"sampling n={n}")
    if sampler == "ancestral" and y is not None:
        raise UserError("the ancestral sampler takes no classes; sample a conditional model "
                        "with the ode sampler")
    if sampler == "ancestral":
        sol = ancestral_samples(ck.objective(), ck.load_model(ema=use_ema, module=model),
                                ck.shape, n, steps=steps, seed=seed, where=str(ck.path))
        solver = "ancestral"
    else:
        sol = sample_tensor(sample_velocity(ck, y, guidance, ema=use_ema, module=model),
                            ck.shape, n, steps=steps, solver=solver, seed=seed, rtol=rtol,
                            atol=atol, source=ck.card.source,
                            extras=None if y is None else {"y": y})
    is_image = len(ck.shape) == 3
    x = sol.x.clamp(-1, 1) if is_image else sol.x
    norm = Normalization(**(ck.card.normalization or {}))
    raw = norm.to_raw(x)
    if is_image and norm == Normalization(*UINT8_NORMALIZATION):   # 8-bit data: its pixels
        raw = raw.round().clamp(0, 255).to(torch.uint8)
    # other images stay float32 in the data's own range (x was clamped to [-1, 1])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_npy(out, raw)
    if y is not None:
        write_npy(labels, y)
    pic = save_samples_picture(x if is_image else raw, picture, is_image,
                               title=f"{ck.path.name}: {solver}, {plural(steps, 'step')}, "
                                     f"{sol.nfe:g} NFE",
                               per_row=per_class(y))
    return SampleRecord(samples=str(out), picture=str(pic) if pic else None, nfe=sol.nfe,
                        steps=steps, shape=list(raw.shape), sampler=solver,
                        labels=str(labels) if y is not None else None,
                        note="; ".join(filter(None, (ck.card.unfinished(ck.path), renamed)))
                        or None)


def pick_classes(card, classes) -> list[int]:
    """Class indices from names or indices (``"all"``: every class)."""
    names = list(card.classes or [])
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    if not classes or list(classes) == ["all"]:
        return list(range(len(names)))
    out = []
    for c in classes:
        c = str(c).strip()
        if c in names:
            out.append(names.index(c))
        elif c.isdigit() and int(c) < len(names):
            out.append(int(c))
        else:
            raise UserError(f"class {c!r} is not one of {', '.join(names)} (or 'all')")
    return out


def sample_labels(card, classes, n: int) -> tuple[torch.Tensor | None, int]:
    """Labels of ``n`` samples split evenly over the chosen classes (rounded up), in blocks
    (one grid row per class), and their number; None for an unconditional model."""
    if not card.conditional:
        if classes:
            raise UserError("classes need a conditional model (trained with conditional); "
                            "this one is unconditional")
        return None, n
    picks = pick_classes(card, classes)
    y = torch.tensor(picks, dtype=torch.int64).repeat_interleave(-(-n // len(picks)))
    return y, len(y)


def per_class(y: torch.Tensor | None) -> int | None:
    """Samples per class of :func:`sample_labels` (a picture's row length)."""
    return None if y is None else len(y) // len(set(y.tolist()))
