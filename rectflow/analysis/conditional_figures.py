"""The conditional part of a comparison: one row per model and guidance weight (straightness,
transport, the lead quality metric and class accuracy at each step count), a per-class path
table, and per-class sample grids of every round (``class_samples.png``: one row per class).

It shows the trade-off guidance makes: a larger ``w`` raises class accuracy and lowers
diversity (FD rises again once samples crowd into the modes of their class), and bends paths
(the guided field is not the velocity of any coupling, so straightness grows with ``w``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import figures as report
from ..records.checkpoint import Checkpoint
from ..core.guidance import Guided
from ..core.seeding import noise
from ..core.solvers import solve

GRID_STEPS = (1, 8)
PER_CLASS = 8


def summary(labels: list[str], evals: list, metric: str) -> dict | None:
    """``compare.json["conditional"]``: rows per (model, guidance); None when unconditional."""
    if not evals or not evals[0].conditional:
        return None
    rows = []
    for lab, ev in zip(labels, evals):
        c = ev.conditional or {}
        for w, g in c.get("guidance", {}).items():
            p = g["path"]
            rows.append({"name": lab, "stage": ev.stage, "guidance": w,
                         "baked_guidance": c.get("baked_guidance"),
                         **{k: p.get(k) for k in ("straightness", "transport_cost", "ot_cost")},
                         "quality": {k: {m: v.get(m) for m in (metric, "accuracy")}
                                     for k, v in g["quality"].items()},
                         "per_class": p.get("per_class", {})})
    return {"classes": evals[0].conditional["classes"], "metric": metric, "rows": rows,
            "labels": evals[0].conditional.get("labels"),
            "accuracy": evals[0].conditional.get("accuracy")}


def _w(row: dict) -> str:
    if row.get("baked_guidance") is not None:
        return f"{row['baked_guidance']:g} (baked)"
    return row["guidance"]


def table(cond: dict, steps: list) -> tuple[list[str], list[list]]:
    m = cond["metric"]
    keys = [str(k) for k in steps]
    headers = (["model", "guidance", "straightness", "transport"]
               + [f"{m.upper()} @{k}" for k in keys] + [f"acc @{k}" for k in keys])
    rows = [[r["name"], _w(r), r["straightness"], r["transport_cost"]]
            + [r["quality"][k][m] for k in keys] + [r["quality"][k]["accuracy"] for k in keys]
            for r in cond["rows"]]
    return headers, rows


def class_table(cond: dict) -> tuple[list[str], list[list]]:
    """Straightness and transport cost per class (every model and guidance)."""
    headers = ["model", "guidance", "class", "n", "straightness", "transport"]
    rows = [[r["name"], _w(r), c, v["n"], v["straightness"], v["transport_cost"]]
            for r in cond["rows"] for c, v in r["per_class"].items()]
    return headers, rows


def markdown(result: dict) -> str:
    cond = result.get("conditional")
    if not cond:
        return ""
    h, rows = table(cond, result["args"]["steps"])
    ch, crows = class_table(cond)
    return ("\n## Conditional: class accuracy and guidance\n\n" + report.markdown_table(h, rows)
            + "\n### Paths per class\n\n" + report.markdown_table(ch, crows))


def csv(result: dict) -> str:
    h, rows = table(result["conditional"], result["args"]["steps"])
    return report.csv_text(h, rows)


def class_grids(paths: list[Path], labels: list[str], seed: int, path: Path) -> Path:
    """Samples of every class (rows) for each model, at 1 and 8 Euler steps, same noise."""
    cells = []
    for p, lab in zip(paths, labels):
        ck = Checkpoint(p)
        c = len(ck.card.classes)
        y = torch.arange(c).repeat_interleave(PER_CLASS)
        x0 = noise(c * PER_CLASS, ck.shape, seed, "compare-class-grid")
        v = Guided(ck.objective(), ck.load_model(), c)
        with torch.no_grad():
            cells.append((lab, {k: solve(v, x0, steps=k, extras={"y": y}).x
                                for k in GRID_STEPS}))
    return report.save_sample_grids(cells, path, nrow=PER_CLASS)
