"""Data-to-data transport with a trained flow: inversion, translation and interpolation.

A flow carries its source (N(0, I), or a data set: :mod:`rectflow.data.sources`) at t = 0 to its
data at t = 1. Solving the same ODE backwards maps data to source points (*inversion*); the
solvers integrate from 0 to 1 only, so the backward solve integrates the reversed field
``v'(x, s) = -v(x, 1 - s)`` (:func:`reversed_field`) from the data, with the same solver
signature. Its accuracy is measured by the *round trip*: invert, generate back, compare with
the inputs (:func:`round_trip`); straighter flows (later reflow rounds) need fewer steps for
the same error. *Translation* is the forward solve from given source points; *interpolation*
maps a line between two source points.

Inputs and outputs are files in their distribution's own units (:mod:`rectflow.data.inputs`);
every output is checked before anything is written (never an input, never inside a model
folder or an input folder, an existing output only with ``overwrite``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import io
from ..analysis import figures as report
from ..records.checkpoint import Checkpoint
from ..records.outputs import TransportRecord
from ..data import Normalization, load_dataset
from ..errors import UserError
from ..analysis.evaluate import reference_data
from ..data.inputs import check_file_output, encode, read_inputs, refuse_inputs
from ..io.files import write_npy
from ..options import COUPLE, table_of
from ..io.files import atomic_write_bytes
from ..core.solvers import solve
from ..data.sources import Source, describe
from ..progress import plural

ROUND_TRIP = (("euler", 1), ("euler", 4), ("euler", 16), ("rk4", 4), ("rk4", 16),
              ("dopri5", None))
ROUND_TRIP_N = 500          # inputs the round-trip table is measured on
GRID_NAME = "translate-grid.png"


def reversed_field(velocity):
    """dx/ds of the backward solve: ``-v(x, 1 - s)``, so s = 0..1 runs t = 1..0."""
    def v(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return -velocity(x, 1 - s)
    return v


def to_source(velocity, x1: torch.Tensor, solver: str = "rk4", steps: int = 32,
              rtol: float = 1e-5, atol: float = 1e-5):
    """The source points of data ``x1`` (model units) and the solver's Solution."""
    return solve(reversed_field(velocity), x1, method=solver, steps=steps, rtol=rtol, atol=atol)


def round_trip(velocity, x1: torch.Tensor, settings=ROUND_TRIP, rtol: float = 1e-5,
               atol: float = 1e-5) -> list[dict]:
    """Invert then generate back with each (solver, steps); the RMS error per coordinate (model
    units) between the inputs and their round trip, mean and worst over the inputs."""
    rows = []
    for solver, steps in settings:
        kw = {"method": solver, "steps": steps or 1, "rtol": rtol, "atol": atol}
        back = solve(reversed_field(velocity), x1, **kw)
        fwd = solve(velocity, back.x, **kw)
        err = (fwd.x - x1).flatten(1).pow(2).mean(1).sqrt()
        rows.append({"solver": solver, "steps": steps, "nfe": back.nfe + fwd.nfe,
                     "rms_mean": float(err.mean()), "rms_max": float(err.max())})
    return rows


def _settings(ckpt: Checkpoint, solver: str, steps: int | None, rtol: float, atol: float):
    opts = table_of(COUPLE)
    steps = int(steps if steps is not None else ckpt.card.sample["steps"])
    return (opts["solver"].check(solver), opts["steps"].check(steps), opts["rtol"].check(rtol),
            opts["atol"].check(atol))


def _npy(out: str | Path) -> Path:
    out = Path(out)
    return out if out.suffix == ".npy" else out.with_name(out.name + ".npy")


# ------------------------------------------------------------------------------------ invert
def invert(ckpt_dir: str | Path, input: str | Path, out: str | Path, *, solver: str = "rk4",
           steps: int | None = 32, rtol: float = 1e-5, atol: float = 1e-5,
           use_ema: bool = True, check: bool = True, overwrite: bool = False,
           model: torch.nn.Module | None = None) -> TransportRecord:
    """Write the source points of the data in ``input`` to ``out`` (``.npy``, in the source's
    own units; N(0, I) units for a noise model) and, with ``check``, the round-trip error of a
    few solvers and step counts on up to :data:`ROUND_TRIP_N` of the inputs."""
    ck = Checkpoint(ckpt_dir)
    solver, steps, rtol, atol = _settings(ck, solver, steps, rtol, atol)
    out = _npy(out)
    check_file_output(out, [ck.path, input], overwrite)
    target = Normalization(**(ck.card.normalization or {}))
    items = read_inputs([input], ck.shape, target)
    x1 = torch.cat([it.x for it in items])
    net = ck.velocity(ema=use_ema, module=model)
    sol = to_source(net, x1, solver, steps, rtol, atol)
    src = Source(ck.card.source, ck.shape)
    write_npy(out, src.to_raw(sol.x))
    rows = round_trip(net, x1[:ROUND_TRIP_N], rtol=rtol, atol=atol) if check else []
    return TransportRecord("invert", str(out), solver, steps, sol.nfe, n=int(x1.shape[0]),
                           source=describe(ck.card.source),
                           round_trip_n=min(ROUND_TRIP_N, int(x1.shape[0])), round_trip=rows)


# --------------------------------------------------------------------------------- translate
def translate(ckpt_dir: str | Path, inputs: list[str | Path], out: str | Path, *,
              solver: str = "euler", steps: int | None = None, rtol: float = 1e-5,
              atol: float = 1e-5, use_ema: bool = True, overwrite: bool = False,
              model: torch.nn.Module | None = None) -> TransportRecord:
    """Map every input (source units) to the data with the flow; write each output under its
    input's name in the folder ``out``, and a picture of inputs beside outputs."""
    ck = Checkpoint(ckpt_dir)
    solver, steps, rtol, atol = _settings(ck, solver, steps, rtol, atol)
    inputs = [Path(p) for p in inputs]
    refuse_inputs(Path(out), [ck.path, *inputs])
    if Path(out).is_dir() and not Path(out).is_symlink() and not io.is_empty(out) \
            and not overwrite:
        raise UserError(f"out {out} already exists and is not empty; pass overwrite to "
                        "replace it")
    out = io.check_output(out, inputs=[ck.path, *inputs], overwrite=overwrite,
                          kind="translate")
    src = Source(ck.card.source, ck.shape)
    items = read_inputs(inputs, ck.shape, src.normalization)
    if any(it.name == GRID_NAME for it in items):
        raise UserError(f"an input is named {GRID_NAME}, the picture translate writes; "
                        "rename it")
    net = ck.velocity(ema=use_ema, module=model)
    x0 = torch.cat([it.x for it in items])
    sol = solve(net, x0, method=solver, steps=steps, rtol=rtol, atol=atol)
    image = len(ck.shape) == 3
    target = Normalization(**(ck.card.normalization or {}))
    splits = torch.split(sol.x, [it.x.shape[0] for it in items])

    def write(folder: Path) -> None:
        for it, y in zip(items, splits):
            atomic_write_bytes(folder / it.name, encode(it, y, target, image))
        _pair_picture(ck, x0, sol.x, folder / GRID_NAME,
                      f"{describe(ck.card.source)} -> {describe(ck.card.data)}: "
                      f"{solver}, {plural(steps, 'step')}")

    with io.FolderLock(out):
        if overwrite:
            with io.staged_output(out, "translate", overwrite=True) as work:
                write(work)
        else:
            write(io.ensure_output(out, "translate"))
    return TransportRecord("translate", str(out), solver, steps, sol.nfe, n=int(x0.shape[0]),
                           files=[it.name for it in items], picture=str(out / GRID_NAME))


def _pair_picture(ck: Checkpoint, x0: torch.Tensor, x1: torch.Tensor, path: Path,
                  title: str) -> Path | None:
    """Inputs beside outputs: image pairs side by side (8 pairs a row), or 2-D points joined
    to their images over the data."""
    if len(ck.shape) == 3:
        from ..data.images import save_image_grid
        k = min(64, x0.shape[0])
        tiles = torch.stack([x0[:k].clamp(-1, 1), x1[:k].clamp(-1, 1)], 1).flatten(0, 1)
        return save_image_grid(tiles, path, nrow=2 * min(8, k))
    if ck.shape != (2,):
        return None
    ref = reference_data(load_dataset(ck.card.data, "test"), 1000, 0)
    traj = torch.stack([x0, x1])[:, :300]
    return report.save_trajectories([(title, traj)], path, reference=ref)


# ------------------------------------------------------------------------------- interpolate
def interpolate(ckpt_dir: str | Path, inputs: list[str | Path], out: str | Path, *,
                frames: int = 9, solver: str = "euler", steps: int | None = None,
                rtol: float = 1e-5, atol: float = 1e-5, use_ema: bool = True,
                overwrite: bool = False,
                model: torch.nn.Module | None = None) -> TransportRecord:
    """Map ``frames`` points on the line between two source points (the first row of each of
    two inputs, or the first two rows of one): a picture ``out`` (``.png``; a strip of source
    points over outputs for images, the two paths for 2-D) and the outputs beside it (``.npy``,
    data units). For a noise source the line is variance preserving, (1-a)x + a y over
    sqrt((1-a)² + a²), so its points stay N(0, I)-like."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= 64:
        raise UserError(f"frames must be a whole number in 2..64, got {frames!r}")
    ck = Checkpoint(ckpt_dir)
    solver, steps, rtol, atol = _settings(ck, solver, steps, rtol, atol)
    out = Path(out)
    out = out if out.suffix == ".png" else out.with_name(out.name + ".png")
    npy = out.with_suffix(".npy")
    for p in (out, npy):
        check_file_output(p, [ck.path, *inputs], overwrite)
    src = Source(ck.card.source, ck.shape)
    rows = torch.cat([it.x[:1] if len(inputs) > 1 else it.x
                      for it in read_inputs(inputs, ck.shape, src.normalization)])
    if rows.shape[0] < 2:
        raise UserError("interpolate needs two source points: two inputs, or one holding two "
                        "rows")
    a = torch.linspace(0, 1, frames).reshape(-1, *([1] * len(ck.shape)))
    line = (1 - a) * rows[0] + a * rows[1]
    if src.is_noise:
        line = line / torch.sqrt((1 - a) ** 2 + a ** 2)
    net = ck.velocity(ema=use_ema, module=model)
    sol = solve(net, line, method=solver, steps=steps, rtol=rtol, atol=atol)
    image = len(ck.shape) == 3
    y = sol.x.clamp(-1, 1) if image else sol.x
    write_npy(npy, Normalization(**(ck.card.normalization or {})).to_raw(y))
    if image:
        from ..data.images import save_image_grid
        save_image_grid(torch.cat([line.clamp(-1, 1), y]), out, nrow=frames)
    elif ck.shape == (2,):
        _path_picture(ck, line, y, out)
    return TransportRecord("interpolate", str(out), solver, steps, sol.nfe, n=frames,
                           picture=str(out), outputs=str(npy), frames=frames)


def _path_picture(ck: Checkpoint, line: torch.Tensor, y: torch.Tensor, path: Path) -> Path:
    plt, (fig, ax) = report._figure(figsize=(4.2, 4.2))
    ref = reference_data(load_dataset(ck.card.data, "test"), 1000, 0).numpy()
    ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.85", linewidths=0)
    for pts, c, lab in ((line, "0.3", "source line"), (y, "tab:orange", "its image")):
        p = pts.numpy()
        ax.plot(p[:, 0], p[:, 1], "-o", c=c, ms=3, lw=1, label=lab)
    ax.set_aspect("equal")
    ax.legend(fontsize=7)
    ax.set_title(f"interpolation, {describe(ck.card.source)} -> {describe(ck.card.data)}",
                 fontsize=9)
    return report.save_figure(fig, path)
