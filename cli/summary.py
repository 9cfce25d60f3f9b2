"""The one printer of an evaluation report (eval.json), used by train, reflow, distill and
eval, and the path-metrics table of couple."""
from __future__ import annotations

from .console import plain_console
from rich.table import Table

from rectflow.api import EvalReport, feature_note, few_points, plural, sample_size_notes


console = plain_console()


def num(v, spec: str = ".4g") -> str:
    """A figure for a table; "n/a" when it is missing or not finite (never "nan")."""
    import math
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return format(v, spec)


def path_table(title: str, path: dict) -> Table:
    grid = f"{path.get('solver', '')} {path.get('steps', '')}".strip()
    t = Table(title=f"{title}; {path.get('n_paths', path.get('n', '?'))} paths"
                    + (f" on a {grid} grid" if grid else ""), title_justify="left")
    for col in ("straightness", "per dim", "curvature", "transport", "OT cost"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_row(num(path['straightness']), num(path['straightness_per_dim']),
              num(path['curvature']), num(path['transport_cost']),
              num(path['ot_cost']) if "ot_cost" in path else "-")
    return t


def quality_table(ev: EvalReport) -> Table:
    metrics = list(ev.metrics)
    seeds = ev.seeds or [ev.seed]
    t = Table(title=f"{ev.checkpoint}: {ev.n} samples vs {ev.n_reference} held-out points, "
                    f"mean ± std over {plural(len(seeds), 'seed')}", title_justify="left")
    for col in ("solver", "steps", "NFE", *(m.upper() for m in metrics)):
        t.add_column(col, justify="right")

    def cell(d: dict, m: str) -> str:
        std = d.get(f"{m}_std")
        return num(d.get(m)) + (f" ± {num(std, '.1g')}" if std else "")
    for v in ev.quality.values():
        t.add_row(ev.solver, str(v["steps"]), f"{v['nfe']:g}", *(cell(v, m) for m in metrics))
    r = ev.reference
    if r:
        t.add_row(f"dopri5 rtol {r['rtol']:g}", "adaptive", f"{r['nfe']:.4g}",
                  *(cell(r, m) for m in metrics))
    if ev.floors:
        t.add_row("noise floor", "data vs data", "-",
                  *(cell(ev.floors, m) + (" !" if few_points(ev.floors, m) else "")
                    for m in metrics))
    return t


def print_eval(ev: EvalReport | None, where=None) -> None:
    if ev is None:
        if where is not None:
            console.print(f"wrote {where}")
        return
    console.print(quality_table(ev))
    for line in sample_size_notes(ev.n_reference, ev.floors):
        console.print(line)
    if ev.lineage:
        console.print(ev.lineage)
    console.print(path_table("path metrics (transport cost vs exact OT cost of the same "
                             "endpoints)", ev.path))
    if feature_note(ev.classifier):
        console.print(feature_note(ev.classifier))
    if where is not None:
        console.print(f"{'cached' if getattr(ev, 'cached', False) else 'wrote'} {where}")


def print_stage(path) -> None:
    """After train/reflow/distill: the stage's own eval.json, if it evaluated."""
    from pathlib import Path
    f = Path(path) / EvalReport.FILENAME
    print_eval(EvalReport.read(f) if f.is_file() else None, path)
