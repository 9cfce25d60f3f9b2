"""Comparing the rounds of a reflow run: the same noise, grid and reference data for every
checkpoint, one table, and the pictures that show paths straightening.

:func:`compare` evaluates each checkpoint with :func:`rectflow.analysis.evaluate.evaluate_checkpoint`
(reusing its cached ``eval.json`` when the arguments match) and writes into ``out``::

    compare.json    every row, the lineage of each checkpoint, the arguments
    compare.csv     one flat row per checkpoint
    compare.md      the table as Markdown
    trajectories.png  (2-D data) the same 200 noise points under each checkpoint's ODE
    samples.png       (images) sample grids at 1/2/4/8 steps, one row per checkpoint
    straightness.png  straightness, curvature and transport cost (with OT) against round
    quality.png       sample quality against NFE, one curve per checkpoint

:func:`animate` writes a GIF of particles flowing from noise to data, one panel per checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..records import checkpoint as ckpt
from . import conditional_figures as conditional_report, figures as report
from .. import io
from ..records.checkpoint import Checkpoint
from ..data import load_dataset
from ..errors import UserError
from ..io.stage import check_files
from .evaluate import METRIC_NOTES, default_features_dir, evaluate_checkpoint, reference_data
from ..options import EvalConfig
from ..records import Comparison, EvalReport
from ..core.metrics import few_points, sample_size_notes, verdict
from ..core.solvers import solve
from ..data.sources import initial_points
from ..records.checkpoint import lineage

Callback = Callable[[dict], None]
MODEL_STAGES = ("train", "reflow", "distill")
STAGE_ORDER = {"train": 0, "reflow": 0, "distill": 1}
TRAJECTORY_POINTS = 200
TRAJECTORY_STEPS = 50
GRID_STEPS = (1, 2, 4, 8)
GRID_IMAGES = 16
PATH_KEYS = ("straightness", "straightness_per_dim", "curvature", "transport_cost", "ot_cost")


def find_checkpoints(dirs: list[str | Path]) -> list[Path]:
    """The model checkpoints to compare, ordered by round (a distilled model after the round it
    starts from). One folder that is not itself a checkpoint is read as a run folder: its
    model subfolders (rf1, rf2, ..., distill) are taken."""
    if not dirs:
        raise UserError("name one or more checkpoint folders, or one run folder")
    paths = [Path(d) for d in dirs]
    for p in paths:
        if not p.is_dir():
            raise UserError(f"{p} is not a folder")
    if len(paths) == 1 and not (paths[0] / ckpt.CONFIG).is_file():
        run = paths[0]
        paths = [c for c in sorted(run.iterdir())
                 if (c / ckpt.CONFIG).is_file() and _stage(c) in MODEL_STAGES]
        if not paths:
            raise UserError(f"{run} holds no checkpoint folders (with config.json)")
    cks = [(p, Checkpoint(p).card) for p in paths]
    cks.sort(key=_order)
    first = cks[0][1]
    for p, card in cks[1:]:
        if card.data != first.data or card.shape != first.shape:
            raise UserError(f"{p} was trained on {card.data.get('name')} {card.shape}, "
                            f"{cks[0][0]} on {first.data.get('name')} {first.shape}; "
                            "compare checkpoints of one dataset")
    return [p for p, _ in cks]


def _order(path_card) -> tuple:
    """Rounds in order; a distilled student right after the model it starts from."""
    card = path_card[1]
    init = int((card.parent or {}).get("init_round", card.round))
    return (max(card.round, init) if card.stage == "distill" else card.round,
            STAGE_ORDER[card.stage])


def _stage(folder: Path) -> str | None:
    try:
        return Checkpoint(folder).card.stage
    except UserError:
        return None


def _labels(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def flow_panels(paths: list[Path], labels: list[str], n: int, seed: int,
                steps: int = TRAJECTORY_STEPS) -> list[tuple[str, torch.Tensor]]:
    """Trajectories of the same ``n`` noise points under each checkpoint, on a uniform Euler
    grid of ``steps`` steps, or fewer when the model is meant for fewer (a distilled one)."""
    panels = []
    for path, label in zip(paths, labels):
        ck = Checkpoint(path)
        k = min(steps, int(ck.card.sample["steps"]))
        x0 = initial_points(ck.card, n, seed, "compare-trajectories")
        sol = solve(ck.velocity(), x0, method="euler", steps=k, record=True)
        panels.append((f"{label} ({k} step{'s' if k > 1 else ''})", sol.trajectory))
    return panels


def _row(label: str, path: Path, ev: EvalReport, metrics: list[str]) -> dict:
    chain = lineage(path)
    card = Checkpoint(path).card
    return {"name": label, "path": str(path), "stage": ev.stage, "round": ev.round,
            "objective": (card.objective or {}).get("name", "flow"),
            "lineage": [Path(c["path"]).name for c in chain],
            "parent": card.parent,
            **{k: ev.path[k] for k in PATH_KEYS}, "n_paths": ev.path.get("n_paths"),
            "quality": {k: {m: v.get(m) for m in ("steps", "nfe", *metrics,
                                                  *(f"{x}_std" for x in metrics))}
                        for k, v in ev.quality.items()},
            "reference": ({m: ev.reference.get(m) for m in ("nfe", *metrics)}
                          if ev.reference else None),
            "lineage_text": ev.lineage, "path_grid": ev.path.get("grid"),
            "cached": bool(getattr(ev, "cached", False))}


def tie_marks(cells: list[tuple[float, float]]) -> list[str]:
    """Rank one column of (mean, std over seeds), lower is better: '*' marks the best, '~' a
    value whose difference to the best is within the noise (2 sqrt(s_best² + s²)), '' one
    that is worse by more. With one seed there is no spread and nothing is ranked."""
    valid = [(i, m, s) for i, (m, s) in enumerate(cells) if m is not None]
    if len(valid) < 2 or all(s == 0 for _, _, s in valid):
        return [""] * len(cells)
    best_i, best_m, best_s = min(valid, key=lambda v: v[1])
    marks = [""] * len(cells)
    for i, m, s in valid:
        marks[i] = "*" if i == best_i else "~" if m - best_m <= 2 * (best_s**2 + s**2) ** 0.5 \
            else ""
    return marks


def _cell(mean, std, mark: str = "") -> str:
    if mean is None:
        return "-"
    return f"{mean:.3g}" + (f" ± {std:.1g}" if std else "") + (f" {mark}" if mark else "")


def _stage_label(row: dict) -> str:
    """The stage, with the objective when it is not flow matching: 'train (diffusion)'."""
    objective = row.get("objective", "flow")
    return row["stage"] if objective == "flow" else f"{row['stage']} ({objective})"


def table(result: dict | Comparison) -> tuple[list[str], list[list]]:
    """The comparison as headers + rows: path metrics, the lead quality metric at each step
    count (mean ± std over the seeds; * best, ~ tied with the best within the noise), the
    adaptive reference, and last the noise floor (data against data at the same n). Shared by
    compare.md and the CLI's rich table. A held-out set too small for a verdict
    (:func:`~rectflow.core.metrics.verdict`) marks nothing; a floor from too few points is
    flagged "!"."""
    if isinstance(result, Comparison):
        result = result.to_json()
    m = result["primary_metric"]
    steps = [str(k) for k in result["args"]["steps"]]
    headers = (["model", "stage", "round", "straightness", "S/D", "curvature", "transport",
                "OT cost"] + [f"{m.upper()} @{k}" for k in steps]
               + [f"{m.upper()} dopri5", "dopri5 NFE"])
    rows = [[r["name"], _stage_label(r), r["round"], r["straightness"], r["straightness_per_dim"],
             r["curvature"], r["transport_cost"], r["ot_cost"]] for r in result["rows"]]
    for k in steps:
        cells = [(r["quality"][k][m], r["quality"][k].get(f"{m}_std", 0.0))
                 for r in result["rows"]]
        marks = tie_marks(cells) if verdict(result["n_reference"]) else [""] * len(cells)
        for row, (mean, std), mark in zip(rows, cells, marks):
            row.append(_cell(mean, std, mark))
    for row, r in zip(rows, result["rows"]):
        ref = r["reference"] or {}
        row += [_cell(ref.get(m), 0), ref.get("nfe", "-")]
    fl = result.get("floors") or {}
    if m in fl:
        rows.append(["noise floor", "data", "-", "-", "-", "-", "-", "-"]
                    + [_cell(fl[m], fl.get(f"{m}_std", 0), "!" if few_points(fl, m) else "")]
                    * len(steps) + ["-", "-"])
    return headers, rows


def notes_of(result: dict) -> list[str]:
    """The lines that say which numbers rest on too little data (compare.md and the CLI)."""
    return sample_size_notes(result["n_reference"], result.get("floors") or {})


def _ref(row: dict, m: str) -> list:
    ref = row["reference"] or {}
    return [ref.get(m), ref.get("nfe")]


def flat_table(result: dict) -> tuple[list[str], list[list]]:
    """Every number of every row, one column each (compare.csv)."""
    metrics, nfes = result["metrics"], [str(k) for k in result["args"]["steps"]]
    headers = (["model", "stage", "objective", "round", "lineage", *PATH_KEYS]
               + [f"{m}_steps{k}" for m in metrics for k in nfes]
               + [f"{m}_dopri5" for m in metrics] + ["dopri5_nfe"])
    rows = [[r["name"], r["stage"], r.get("objective", "flow"), r["round"],
             " > ".join(r["lineage"])]
            + [r[k] for k in PATH_KEYS]
            + [r["quality"][k][m] for m in metrics for k in nfes]
            + [(r["reference"] or {}).get(m) for m in metrics]
            + [(r["reference"] or {}).get("nfe")]
            for r in result["rows"]]
    return headers, rows


def compare(dirs: list[str | Path], out: str | Path, config: EvalConfig | None = None, *,
            features_dir: str | Path | None = None, callback: Callback | None = None,
            overwrite: bool = False) -> Comparison:
    """Evaluate every checkpoint on the same noise and reference data; write tables and
    pictures into ``out``; return the :class:`~rectflow.records.Comparison` written as
    ``compare.json``."""
    cfg = config or EvalConfig()
    cfg.validate()
    paths = find_checkpoints(dirs)
    out = Path(out)
    io.check_output(out, inputs=paths, overwrite=overwrite, kind="compare")
    with io.FolderLock(out):   # a compare folder is updated in place: its reports are a cache
        io.ensure_output(out, "compare", resume=overwrite)
        return _compare_into(out, paths, cfg, features_dir, callback)


def _compare_into(out: Path, paths: list[Path], cfg: EvalConfig, features_dir,
                  callback) -> Comparison:
    labels = _labels(paths)
    first = Checkpoint(paths[0])
    spec = first.card.data
    dataset = load_dataset(spec, "test")
    fdir = Path(features_dir) if features_dir is not None else default_features_dir(paths[0])
    if dataset.is_image:   # train the feature network now, with its own progress
        from .own_features import feature_net
        feature_net(spec, fdir, callback)
    emit = callback or (lambda e: None)
    # what evaluate_checkpoint counts: each seed's step counts and floor, dopri5, path metrics
    per_eval = cfg.seeds * (len(cfg.steps) + 1) + int(cfg.adaptive) + 1
    pictures = 3 + int(dataset.is_image and first.card.conditional)   # class_samples.png
    total = per_eval * len(paths) + pictures
    emit({"event": "start", "total": total, "label": "compare"})
    evals = []
    for i, p in enumerate(paths):
        def inner(e, base=i * per_eval):
            if e.get("event") == "progress":
                emit({"event": "progress", "done": base + min(e["done"], per_eval)})
        ev = evaluate_checkpoint(p, cfg, out=out / "evals" / f"{labels[i].replace('/', '-')}.json",
                                 features_dir=fdir, callback=inner, overwrite=True)
        emit({"event": "progress", "done": (i + 1) * per_eval})
        evals.append(ev)
    metrics = list(evals[0].metrics)
    result = {"data": spec,
              "args": cfg.to_json(), "metrics": metrics,
              "metric_notes": {k: METRIC_NOTES[k] for k in (*metrics, *PATH_KEYS)},
              "primary_metric": evals[0].primary_metric,
              "n": evals[0].n, "n_reference": evals[0].n_reference,
              "seeds": evals[0].seeds, "floors": evals[0].floors,
              "classifier": evals[0].classifier,
              "rows": [_row(lab, p, ev, metrics) for lab, p, ev in zip(labels, paths, evals)],
              "conditional": conditional_report.summary(labels, evals,
                                                        evals[0].primary_metric)}
    return _write_compare(out, result, paths, labels, dataset, cfg, emit, per_eval)


def _write_compare(out: Path, result: dict, paths, labels, dataset, cfg, emit,
                   per_eval: int) -> Comparison:
    done = per_eval * len(paths)
    result["pictures"] = {}
    for name, draw in _pictures(result, paths, labels, dataset, cfg).items():
        result["pictures"][name] = str(draw(out / name))
        done += 1
        emit({"event": "progress", "done": done})
    headers, rows = table(result)
    notes = "".join(f"\n{line}\n" for line in notes_of(result))
    ckpt.atomic_write_bytes(out / "compare.md", (report.markdown_table(headers, rows) + notes
                                                 + conditional_report.markdown(result)).encode())
    if result.get("conditional"):
        ckpt.atomic_write_bytes(out / "compare_conditional.csv",
                                conditional_report.csv(result).encode())
    fh, fr = flat_table(result)
    ckpt.atomic_write_bytes(out / "compare.csv", report.csv_text(fh, fr).encode())
    comparison = Comparison(**result)
    comparison.write(out)
    return comparison


def _pictures(result: dict, paths: list[Path], labels: list[str], dataset,
              cfg: EvalConfig) -> dict[str, Callable[[Path], Path]]:
    """Name -> drawing function, for the three pictures of a comparison."""
    rows = result["rows"]
    m = result["primary_metric"]
    out: dict[str, Callable[[Path], Path]] = {}
    if dataset.is_image:
        def grids(path):
            cells = []
            for p, lab in zip(paths, labels):
                ck = Checkpoint(p)
                model, x0 = ck.velocity(), initial_points(ck.card, GRID_IMAGES, cfg.seed,
                                                          "compare-grid")
                cells.append((lab, {k: solve(model, x0, steps=k).x for k in GRID_STEPS}))
            return report.save_sample_grids(cells, path)
        out["samples.png"] = grids
        if result.get("conditional"):
            out["class_samples.png"] = lambda path: conditional_report.class_grids(
                paths, labels, cfg.seed, path)
    elif dataset.shape == (2,):
        ref = reference_data(dataset, 1000, cfg.seed)
        out["trajectories.png"] = lambda path: report.save_trajectories(
            flow_panels(paths, labels, TRAJECTORY_POINTS, cfg.seed), path, reference=ref)
    out["straightness.png"] = lambda path: report.save_round_curves(
        [r["name"] for r in rows],
        {"straightness": [r["straightness"] for r in rows],
         "curvature": [r["curvature"] for r in rows],
         "transport cost": [r["transport_cost"] for r in rows],
         "transport cost (OT)": [r["ot_cost"] for r in rows]}, path)
    out["quality.png"] = lambda path: report.save_nfe_curves(
        {r["name"]: ([v["nfe"] for v in r["quality"].values()],
                     [max(v[m], 1e-12) for v in r["quality"].values()]) for r in rows},
        path, m.upper(),
        references={r["name"]: (r["reference"]["nfe"], max(r["reference"][m], 1e-12))
                    for r in rows if r["reference"]})
    return out


def animate(dirs: list[str | Path], out: str | Path, *, n: int = 500, seed: int = 0,
            steps: int = 60, frames: int = 40, fps: int = 12,
            callback: Callback | None = None, overwrite: bool = False) -> Path:
    """A GIF of ``n`` particles flowing from noise to data under each checkpoint (2-D data)."""
    if n < 1 or steps < 1 or frames < 2 or fps < 1:
        raise UserError("--n and --steps must be >= 1, --frames >= 2, --fps >= 1")
    out = Path(out)
    if out.suffix.lower() != ".gif":
        raise UserError(f"out {out} should end in .gif")
    paths = find_checkpoints(dirs)
    check_files([out], paths, overwrite)
    first = Checkpoint(paths[0])
    if first.shape != (2,):
        raise UserError(f"animate draws 2-D data; {paths[0]} is for shape {list(first.shape)}")
    panels = flow_panels(paths, _labels(paths), n, seed, steps)
    ref = reference_data(load_dataset(first.card.data, "test"), 1000, seed)
    if callback:
        callback({"event": "start", "total": frames, "label": "animate"})
    out.parent.mkdir(parents=True, exist_ok=True)
    return report.save_flow_gif(panels, out, frames=frames, fps=fps, reference=ref,
                                callback=callback)
