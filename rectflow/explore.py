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

from .checkpoint import atomic_write_bytes
from .errors import UserError
from .evaluation import METRIC_NOTES
from .metrics import PathStats, ot_cost, w2
from .solvers import METHODS, solve

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Choice = tuple[str, "int | None"]

FORMAT = "rectflow/explorer"
VERSION = 1

NOTES = {
    "nfe": "velocity evaluations per sample for the whole solve (Euler 1 per step, Heun 2, "
           "RK4 4; dopri5 chooses its own steps)",
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


def _check_choices(choices: Sequence[Choice]) -> list[tuple[str, int | None]]:
    out = []
    for c in choices:
        if not (isinstance(c, (tuple, list)) and len(c) == 2):
            raise UserError(f"each choice must be a (solver, steps) pair, got {c!r}")
        method, steps = c
        if method not in METHODS:
            raise UserError(f"solver must be one of {', '.join(METHODS)}, got {method!r}")
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


def trajectories(velocity_fns: dict[str, Velocity], x0: torch.Tensor,
                 choices: Sequence[Choice], *, reference: torch.Tensor | None = None,
                 max_frames: int = 51, path_steps: int = 100, image_samples: int = 6,
                 value_range: tuple[float, float] = (-1.0, 1.0),
                 rtol: float = 1e-5, atol: float = 1e-5) -> dict:
    """Solve every model of ``velocity_fns`` with every ``(solver, steps)`` of ``choices`` from
    the same ``x0`` and return the explorer's data dict (plain JSON).

    ``reference`` (data points, at least N of them) is drawn behind 2-D points and gives W2; if
    it holds at least 2N points the W2 floor is reported too. ``max_frames`` caps the states kept
    per run (evenly subsampled); ``path_steps`` is the Euler grid of the path metrics;
    ``image_samples`` how many images of ``x0`` are shown; dopri5 ignores steps and uses
    ``rtol``/``atol``.
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
    choices = _check_choices(choices)
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
        for (method, steps), choice in zip(choices, data["choices"]):
            sol = solve(v, x0, method, steps or 1, rtol=rtol, atol=atol, record=True)
            keep = _keep(len(sol.times), max_frames)
            traj = sol.trajectory[keep][:, :shown]
            metrics = {"nfe": sol.nfe}
            if ref is not None:
                metrics["w2"] = _r(w2(sol.x, ref[:n]))
            if floor is not None:
                metrics["w2_floor"] = floor
            runs[choice["key"]] = {
                "times": [round(sol.times[i], 6) for i in keep],
                "recorded": len(sol.times), "steps": len(sol.times) - 1,
                "metrics": metrics,
                "frames": _encode_points(traj) if kind == "points"
                else _encode_images(traj, value_range),
            }
    return data


def page_html(data: dict, title: str = "rectflow trajectory explorer") -> str:
    """The explorer page for ``data`` (from :func:`trajectories`) as one HTML string."""
    if data.get("format") != FORMAT:
        raise UserError(f"data must come from rectflow.explore.trajectories (format {FORMAT!r})")
    template = resources.files("rectflow").joinpath("explore_page.html").read_text("utf-8")
    # "</" inside a <script> element would end it; "<\/" is the same JSON string
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    fill = {"__TITLE__": html.escape(title), "__DATA__": payload}
    return re.sub("__TITLE__|__DATA__", lambda m: fill[m.group(0)], template)


def write_page(data: dict, path: str | Path, title: str = "rectflow trajectory explorer") -> Path:
    """Write the explorer page for ``data`` to ``path`` (atomically); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, page_html(data, title).encode("utf-8"))
    return path
