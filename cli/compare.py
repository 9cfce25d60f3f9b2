"""rectflow compare: the rounds of a reflow run side by side, on the same noise and data."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from .console import plain_console
from rich.table import Table

from rectflow import api
from rectflow.api import Comparison, plural, verdict

from .eval import FeaturesDir, evaluation_options
from .options import Overwrite, Threads, use_threads
from .progress import ProgressCallback
from .summary import num


def _rich(title: str, headers: list[str], rows: list[list]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*("-" if v is None else num(v, ".3g") if isinstance(v, float) else str(v)
                    for v in row))
    t.caption = None
    return t


def compare_tables(result: Comparison) -> list[Table]:
    """The comparison as two narrow tables (paths, then quality) that fit a terminal; titled
    by the data's name (a file's or folder's own name for the user's data)."""
    headers, rows = api.comparison_table(result)
    split = headers.index("OT cost") + 1
    keep = [i for i in range(split) if headers[i] not in ("S/D", "stage")]   # in compare.md
    name = api.describe_data(result.data)
    models = [r for r in rows if r[1] != "data"]   # the noise floor has no paths
    return [_rich(f"{name}: paths on {result.rows[0].get('n_paths')} source points "
                  "(a distilled student: its own k-step path)",
                  [headers[i] for i in keep], [[r[i] for i in keep] for r in models]),
            _rich(f"{name}: sample quality, {result.n} samples vs {result.n_reference} "
                  f"held-out points, mean ± std over {plural(len(result.seeds or [0]), 'seed')}; "
                  + ("* best, ~ tied with it within the noise" if verdict(result.n_reference)
                     else "not ranked"),
                  headers[:1] + headers[split:], [r[:1] + r[split:] for r in rows])]


def print_result(result: Comparison, out: Path) -> None:
    con = plain_console()
    for t in compare_tables(result):
        con.print(t)
    for line in api.comparison_notes(result):
        con.print(line)
    if api.feature_note(result.classifier):
        con.print(api.feature_note(result.classifier))
    if result.conditional:
        c = result.conditional
        con.print(_rich(f"{api.describe_data(result.data)}: conditional, labels "
                        f"{c.get('labels')}; acc = {c.get('accuracy') or 'not measured'}",
                        *api.conditional_table(c, sorted({min(result.args["steps"]),
                                                          max(result.args["steps"])}))))
    for r in result.rows:
        if r.get("lineage_text"):
            con.print(f"{r['name']}: {r['lineage_text']}")
    con.print(f"wrote {out}/compare.json, compare.csv, compare.md; pictures: "
              + ", ".join(result.pictures.values()))


@evaluation_options
def compare(
    options: dict,
    ckpt: Annotated[list[Path], typer.Option("--ckpt", help="Model folder; repeat for each, or give one run folder from `rectflow run`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: compare/ inside a run folder, else ./compare; compare-2, -3... when that exists).")] = None,
    features_dir: FeaturesDir = None,
    overwrite: Overwrite = False,
    threads: Threads = None,
):
    """Compare checkpoints: table, CSV, Markdown and pictures of paths straightening."""
    use_threads(threads)
    if out is None:
        out = api.default_out("compare", ckpt, overwrite=overwrite)
    with ProgressCallback("compare", "part") as cb:
        result = api.compare(ckpt, out=out, features_dir=features_dir, callback=cb,
                             overwrite=overwrite, **options)
    print_result(result, out)
