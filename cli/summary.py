"""Rich tables of a finished stage's metrics."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def path_table(title: str, path: dict) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("straightness", "per dim", "curvature", "transport cost", "OT cost", "grid"):
        t.add_column(col, justify="right")
    t.add_row(f"{path['straightness']:.4g}", f"{path['straightness_per_dim']:.4g}",
              f"{path['curvature']:.4g}", f"{path['transport_cost']:.4g}",
              f"{path['ot_cost']:.4g}" if "ot_cost" in path else "-",
              f"{path.get('solver', '')} {path.get('steps', '')}".strip())
    return t


def print_metrics(folder: Path) -> None:
    f = Path(folder) / "metrics.json"
    if not f.is_file():
        console.print(f"wrote {folder}")
        return
    m = json.loads(f.read_text())
    q = Table(title=f"{folder}: samples vs held-out data (n={m['n']})", title_justify="left")
    q.add_column("NFE", justify="right")
    q.add_column("W2", justify="right")
    q.add_column("MMD", justify="right")
    for k, v in m["quality"].items():
        q.add_row(str(v["nfe"]), f"{v['w2']:.4f}", f"{v['mmd']:.4f}")
    console.print(q)
    console.print(path_table("path metrics", m["path"]))
