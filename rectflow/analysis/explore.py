"""The trajectory explorer: one self-contained HTML page that replays how several models carry
the same noise to data.

:func:`trajectories` solves every model with every (solver, steps) choice from the same ``x0``
with ``record=True`` and keeps the states along t, plus per-model path metrics (straightness
and its relatives, on a fine Euler grid) and per-run sample metrics (NFE, W2 to reference data
and the W2 floor: the W2 between two disjoint sets of data points of the same size, i.e. what a
perfect sampler would score). :func:`write_page` writes it as a single HTML file with the data
and the script inline (no network, no server): a canvas with a slider over t, play/pause, a
model and a sampler choice, and a metrics table.

2-D data (``x0`` of shape [N, 2]) is drawn as a scatter of the current points with their paths
so far; images (``x0`` of shape [N, C, H, W], values in ``value_range``) as the current frame of
a few samples and a film strip of each along t.

The data dict is plain JSON. States are stored compactly: 2-D coordinates as unsigned 16-bit
integers on a per-run grid (a resolution of range / 65535, about 1e-4 for data within ±3),
image pixels as 8-bit values, both base64-encoded; the recorded states of long solves are
evenly subsampled to ``max_frames`` (the page says so). Any extra numbers put in
``data["models"][name]["metrics"]`` or a run's ``"metrics"`` before :func:`write_page` show up
in the table.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..records.checkpoint import Checkpoint
from ..io.files import atomic_write_bytes
from ..errors import UserError
from .evaluate import METRIC_NOTES
from ..core.metrics import PathStats, ot_cost, w2
from ..core.solvers import METHODS, Solution, solve

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Choice = tuple[str, "int | None"]
Sampler = Callable[[torch.Tensor, int], "Solution"]

FORMAT = "rectflow/explorer"
VERSION = 1

NOTES = {
    "nfe": "velocity evaluations per sample for the whole solve (Euler 1 per step, Heun 2, "
           "RK4 4; dopri5 chooses its own steps)",
    "nfe_max": "dopri5: the most velocity evaluations any one sample needed (each sample "
               "takes its own steps; nfe is their mean)",
    "w2": METRIC_NOTES["w2"],
    "w2_floor": "W2 between two disjoint sets of reference data points of the same size: the "
                "score of a perfect sampler at this N; a W2 near the floor is as good as it gets",
    **{k: METRIC_NOTES[k] for k in ("straightness", "straightness_per_dim", "curvature",
                                    "transport_cost", "ot_cost")},
}


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _r(x: float) -> float | None:
    """4 significant digits; None for NaN or infinity (JSON has neither; the page shows n/a)."""
    return float(f"{x:.4g}") if math.isfinite(x) else None


def _check_choices(choices: Sequence[Choice], extra: set[str] = frozenset()
                   ) -> list[tuple[str, int | None]]:
    out = []
    known = (*METHODS, *sorted(extra))
    for c in choices:
        if not (isinstance(c, (tuple, list)) and len(c) == 2):
            raise UserError(f"each choice must be a (solver, steps) pair, got {c!r}")
        method, steps = c
        if method not in known:
            raise UserError(f"solver must be one of {', '.join(known)}, got {method!r}")
        if method == "dopri5":
            steps = None
        elif not (isinstance(steps, int) and steps >= 1):
            raise UserError(f"steps of {method} must be an int >= 1, got {steps!r}")
        if (method, steps) in out:
            raise UserError(f"choice {(method, steps)!r} is given twice")
        out.append((method, steps))
    if not out:
        raise UserError("choices must hold at least one (solver, steps) pair")
    return out


def _kind(x0: torch.Tensor) -> str:
    if x0.dim() == 2 and x0.shape[1] == 2:
        return "points"
    if x0.dim() == 4 and x0.shape[1] in (1, 3):
        return "images"
    raise UserError("x0 must be [N, 2] points or [N, C, H, W] images with C in (1, 3), "
                    f"got shape {list(x0.shape)}")


def _keep(count: int, max_frames: int) -> list[int]:
    """Indices of ``max_frames`` evenly spread states out of ``count`` (first and last kept)."""
    if count <= max_frames:
        return list(range(count))
    return sorted({round(i * (count - 1) / (max_frames - 1)) for i in range(max_frames)})


def _encode_points(traj: torch.Tensor) -> dict:
    a = traj.double().cpu().numpy()                     # [F, N, 2]
    a = np.nan_to_num(a, nan=0.0, posinf=1e6, neginf=-1e6)   # a diverged solve stays drawable
    lo, hi = a.min(axis=(0, 1)), a.max(axis=(0, 1))
    scale = np.where(hi > lo, (hi - lo) / 65535.0, 1.0)
    q = np.rint((a - lo) / scale).clip(0, 65535).astype("<u2")
    return {"lo": lo.tolist(), "scale": scale.tolist(), "q": _b64(q)}


def _encode_images(traj: torch.Tensor, value_range: tuple[float, float]) -> dict:
    lo, hi = value_range
    a = ((traj.double().cpu().nan_to_num(0.0) - lo) / (hi - lo)).clamp(0, 1).mul(255).round()
    a = a.to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()   # [F, S, H, W, C]
    return {"pixels": _b64(a)}


def _path_metrics(v: Velocity, x0: torch.Tensor, steps: int) -> dict:
    stats = PathStats(x0[0].numel())
    stats.start()
    z1 = solve(v, x0, "euler", steps, observer=stats.observer).x
    stats.finish(x0, z1)
    res = stats.result()
    res.pop("n")
    res["ot_cost"] = ot_cost(x0, z1)
    return {k: _r(val) for k, val in res.items()}


def _check_reference(reference: torch.Tensor | None, x0: torch.Tensor) -> torch.Tensor | None:
    if reference is None:
        return None
    if reference.shape[1:] != x0.shape[1:] or reference.shape[0] < x0.shape[0]:
        raise UserError(f"reference must hold >= {x0.shape[0]} samples of shape "
                        f"{list(x0.shape[1:])}, got {list(reference.shape)}")
    return reference.detach().cpu()


def _on_grid(traj: torch.Tensor, row_times: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Per-sample recorded states (``traj`` [T, B, ...] at times ``row_times`` [T, B], each
    column non-decreasing, as dopri5 records them) linearly interpolated to the common times
    ``grid`` [G]: [G, B, ...]."""
    rt = row_times.T.contiguous().double()                          # [B, T]
    g = grid.double().expand(rt.shape[0], -1).contiguous()          # [B, G]
    i = (torch.searchsorted(rt, g, right=True) - 1).clamp(0, rt.shape[1] - 2)
    t0, t1 = rt.gather(1, i), rt.gather(1, i + 1)
    span = t1 - t0
    a = torch.where(span > 0, (g - t0) / torch.where(span > 0, span, 1.0), 0.0).clamp(0, 1)
    flat = traj.flatten(2).double()                                 # [T, B, D]
    rows = torch.arange(rt.shape[0])[:, None]
    out = (1 - a)[..., None] * flat[i, rows] + a[..., None] * flat[i + 1, rows]   # [B, G, D]
    return out.transpose(0, 1).reshape(grid.shape[0], *traj.shape[1:]).to(traj.dtype)


def _run(sol, shown: int, max_frames: int) -> tuple[torch.Tensor, list[float], int, int]:
    """The frames a run keeps, their times, how many states were recorded and the steps.
    Fixed grids keep evenly spread recorded states; dopri5 (each sample on its own times)
    is interpolated to ``max_frames`` uniform times, and its steps are the median over the
    shown samples of the steps each accepted."""
    recorded = int(sol.trajectory.shape[0])
    if sol.row_times is None:
        keep = _keep(recorded, max_frames)
        return (sol.trajectory[keep][:, :shown], [round(sol.times[i], 6) for i in keep],
                recorded, len(sol.times) - 1)
    rt = sol.row_times[:, :shown]
    grid = torch.linspace(0.0, 1.0, max_frames, dtype=torch.float64)
    accepted = (rt[1:] > rt[:-1]).sum(0)
    return (_on_grid(sol.trajectory[:, :shown], rt, grid), [round(float(t), 6) for t in grid],
            recorded, int(accepted.median()))


def trajectories(velocity_fns: dict[str, Velocity], x0: torch.Tensor,
                 choices: Sequence[Choice], *, reference: torch.Tensor | None = None,
                 max_frames: int = 51, path_steps: int = 100, image_samples: int = 6,
                 value_range: tuple[float, float] = (-1.0, 1.0),
                 rtol: float = 1e-5, atol: float = 1e-5,
                 samplers: dict[str, dict[str, Sampler]] | None = None) -> dict:
    """Solve every model of ``velocity_fns`` with every ``(solver, steps)`` of ``choices`` from
    the same ``x0`` and return the explorer's data dict (plain JSON).

    ``reference`` (data points, at least N of them) is drawn behind 2-D points and gives W2; if
    it holds at least 2N points the W2 floor is reported too. ``max_frames`` caps the states kept
    per run (evenly subsampled; dopri5 runs, whose samples each take their own steps, are
    interpolated to ``max_frames`` uniform times); ``path_steps`` is the Euler grid of the path
    metrics; ``image_samples`` how many images of ``x0`` are shown; dopri5 ignores steps and
    uses ``rtol``/``atol``.

    ``samplers`` adds samplers that only some models have: ``{model: {"ancestral": fn}}`` with
    ``fn(x0, steps)`` returning a recorded :class:`~rectflow.core.solvers.Solution`; ``choices`` then
    may hold ``("ancestral", steps)``, which the other models lack (the page says so).
    """
    if not velocity_fns:
        raise UserError("velocity_fns must name at least one model")
    if max_frames < 2:
        raise UserError(f"max_frames must be >= 2, got {max_frames}")
    if image_samples < 1:
        raise UserError(f"image_samples must be >= 1, got {image_samples}")
    if not value_range[1] > value_range[0]:
        raise UserError(f"value_range must be (low, high) with low < high, got {value_range}")
    kind = _kind(x0)
    choices = _check_choices(choices, {k for own in (samplers or {}).values() for k in own})
    x0 = x0.detach()
    n = x0.shape[0]
    ref = _check_reference(reference, x0)
    shown = n if kind == "points" else min(image_samples, n)
    floor = None
    if ref is not None and ref.shape[0] >= 2 * n:
        floor = _r(w2(ref[:n], ref[n:2 * n]))
    data = {
        "format": FORMAT, "version": VERSION, "kind": kind, "n": n, "shown": shown,
        "shape": list(x0.shape[1:]), "max_frames": max_frames, "path_steps": path_steps,
        "value_range": list(value_range), "notes": dict(NOTES),
        "choices": [{"key": f"{m}-{s if s is not None else 'adaptive'}", "solver": m,
                     "steps": s} for m, s in choices],
        "reference": _encode_points(ref[:n][None]) if ref is not None and kind == "points"
        else None,
        "models": {}, "runs": {},
    }
    for name, v in velocity_fns.items():
        name = str(name)
        data["models"][name] = {"metrics": _path_metrics(v, x0, path_steps)}
        runs = data["runs"][name] = {}
        own = (samplers or {}).get(name, {})
        for (method, steps), choice in zip(choices, data["choices"]):
            if method in METHODS:
                sol = solve(v, x0, method, steps or 1, rtol=rtol, atol=atol, record=True)
            elif method in own:
                sol = own[method](x0, steps)
            else:
                continue
            traj, times, recorded, taken = _run(sol, shown, max_frames)
            metrics = {"nfe": _r(sol.nfe)}
            if sol.nfe_per_sample is not None:
                metrics["nfe_max"] = int(sol.nfe_max)
            if ref is not None:
                metrics["w2"] = _r(w2(sol.x, ref[:n]))
            if floor is not None:
                metrics["w2_floor"] = floor
            runs[choice["key"]] = {
                "times": times, "recorded": recorded, "steps": taken,
                "metrics": metrics,
                "frames": _encode_points(traj) if kind == "points"
                else _encode_images(traj, value_range),
            }
    return data


# characters that can end or change a <script> element ("</script>", "<!--") or a JS string
# (U+2028/9, line breaks to older engines), as the same JSON string's \u escapes
_SCRIPT_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def script_json(data) -> str:
    """``data`` as JSON safe to embed in an HTML ``<script>`` element whatever its strings
    hold (model names, paths): ``<``, ``>``, ``&`` and U+2028/9 become ``\\uXXXX``."""
    # script text inside an HTML page, not a file rectflow reads back: no record
    return json.dumps(data, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


def page_html(data: dict, title: str = "rectflow trajectory explorer") -> str:
    """The explorer page for ``data`` (from :func:`trajectories`) as one HTML string."""
    if data.get("format") != FORMAT:
        raise UserError(f"data must come from rectflow.analysis.explore.trajectories (format "
                        f"{FORMAT!r})")
    template = resources.files("rectflow.analysis").joinpath("explore_page.html").read_text("utf-8")
    payload = script_json(data)
    fill = {"__TITLE__": html.escape(title), "__DATA__": payload}
    return re.sub("__TITLE__|__DATA__", lambda m: fill[m.group(0)], template)


def write_page(data: dict, path: str | Path, title: str = "rectflow trajectory explorer") -> Path:
    """Write the explorer page for ``data`` to ``path`` (atomically); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, page_html(data, title).encode("utf-8"))
    return path


# ------------------------------------------------------------------------ from model folders
CHECKPOINT_CHOICES: tuple[Choice, ...] = (("euler", 1), ("euler", 2), ("euler", 4),
                                          ("euler", 8), ("euler", 100), ("dopri5", None))
ANCESTRAL = "ancestral"


def check_page_output(out: str | Path, inputs: Sequence[str | Path] = (),
                      overwrite: bool = False) -> Path:
    """Refuse an explorer page path that is not an .html file name, or that
    :func:`rectflow.io.stage.check_files` refuses (it exists without ``overwrite``, it is a
    link, it lies inside one of the ``inputs`` or anything they name)."""
    from ..io.stage import check_files
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"out {out} should end in .html")
    check_files([out], inputs, overwrite)
    return out


def from_checkpoints(dirs: Sequence[str | Path], *, n: int | None = None, seed: int = 0,
                     choices: Sequence[Choice] = CHECKPOINT_CHOICES,
                     ancestral_steps: int | None = 100, use_ema: bool = True,
                     **options) -> dict:
    """The explorer's data for model folders (or one run folder, as ``compare`` reads it):
    every model from the same ``n`` seeded noise draws (300 points; 24 images), the held-out
    data as reference, and for diffusion models also their ancestral sampler on
    ``ancestral_steps`` steps (``None`` or 0: not shown). ``options`` go to
    :func:`trajectories`. Each model's objective and stage are listed with its metrics."""
    from .compare import _labels, find_checkpoints
    from ..data import load_dataset
    from ..core.seeding import noise
    from .evaluate import reference_data
    from ..objectives import Diffusion
    from ..core.seeding import generator
    paths = find_checkpoints(list(dirs))
    labels = _labels(paths)
    cks = [Checkpoint(p) for p in paths]
    shape = cks[0].shape
    n = n if n is not None else (24 if len(shape) == 3 else 300)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise UserError(f"n must be a whole number >= 2, got {n!r}")
    x0 = noise(n, shape, seed, "explorer-noise")
    ref = reference_data(load_dataset(cks[0].card.data, "test"), 2 * n, seed)
    velocities, samplers, cards = {}, {}, {}
    for label, ck in zip(labels, cks):
        objective, net = ck.objective(), ck.load_model(ema=use_ema)
        velocities[label] = objective.velocity(net)
        cards[label] = {"objective": objective.name, "stage": ck.card.stage,
                        "round": ck.card.round}
        if isinstance(objective, Diffusion) and ancestral_steps:
            samplers[label] = {ANCESTRAL: lambda x, k, o=objective, m=net: o.ancestral_solve(
                m, x, k, generator(seed, "explorer-ancestral"), record=True)}
    choices = list(choices) + ([(ANCESTRAL, ancestral_steps)] if samplers else [])
    data = trajectories(velocities, x0, choices, samplers=samplers,
                        reference=ref if ref.shape[0] >= n else None, **options)
    for label, info in cards.items():
        data["models"][label]["metrics"] = {**info, **data["models"][label]["metrics"]}
    data["sources"] = {label: str(p) for label, p in zip(labels, paths)}
    return data


def explore(dirs: Sequence[str | Path], out: str | Path, *, overwrite: bool = False,
            title: str | None = None, **options) -> tuple[Path, dict]:
    """Write the explorer page of model folders (or a run folder) to ``out`` (an .html file;
    never inside an input folder, an existing file only with ``overwrite``); returns the page's
    path and its data (see :func:`from_checkpoints` for ``options``)."""
    out = check_page_output(out, dirs, overwrite)
    data = from_checkpoints(dirs, **options)
    names = ", ".join(data["models"])
    return write_page(data, out, title or f"rectflow trajectory explorer: {names}"), data
