"""rectflow eval: sample quality at several NFEs, a dopri5 reference, and path metrics."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from rectflow.evaluation import EvalConfig, evaluate_checkpoint
from rectflow.solvers import FIXED

from .options import Ckpt, UseEma, _param, with_options
from .progress import ProgressCallback
from .summary import path_table

D = EvalConfig()


def parse_nfes(text: str) -> tuple[int, ...]:
    try:
        nfes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}",
                                 param_hint="--nfe") from None
    if not nfes:
        raise typer.BadParameter("give at least one step count", param_hint="--nfe")
    return nfes


Nfe = Annotated[str, typer.Option("--nfe", help="Comma-separated numbers of solver steps.")]
N = Annotated[int, typer.Option(help="Noise samples (and held-out points, up to the test split's size).")]
Seed = Annotated[int, typer.Option(help="Seed of the noise and the reference data.")]
Solver = Annotated[str, typer.Option(help=f"Fixed-step solver for the NFE grid: {', '.join(FIXED)}.")]
PathSteps = Annotated[int, typer.Option(help="Euler steps of the fine grid for path metrics.")]
Rtol = Annotated[float, typer.Option(help="dopri5 reference: relative tolerance.")]
Atol = Annotated[float, typer.Option(help="dopri5 reference: absolute tolerance.")]
FidWeights = Annotated[Optional[Path], typer.Option(help="Local safetensors of torchvision's inception_v3 state dict: adds the standard FID (images).")]
FeaturesDir = Annotated[Optional[Path], typer.Option(help="Cache of the feature classifiers (default <checkpoints root>/.features).")]


def eval_config(nfe: str, solver: str, n: int, seed: int, path_steps: int, rtol: float,
                atol: float, fid_weights: Optional[Path], use_ema: bool) -> EvalConfig:
    return EvalConfig(nfes=parse_nfes(nfe), solver=solver, n=n, seed=seed,
                      path_steps=path_steps, reference_rtol=rtol, reference_atol=atol,
                      use_ema=use_ema, fid_weights=str(fid_weights) if fid_weights else None)


# eval and compare take the same evaluation options and receive ``config: EvalConfig``
evaluation_options = with_options([
    _param("nfe", Nfe, ",".join(str(k) for k in D.nfes)),
    _param("solver", Solver, D.solver),
    _param("n", N, D.n),
    _param("seed", Seed, D.seed),
    _param("path_steps", PathSteps, D.path_steps),
    _param("rtol", Rtol, D.reference_rtol),
    _param("atol", Atol, D.reference_atol),
    _param("fid_weights", FidWeights, None),
    _param("use_ema", UseEma, True),
], lambda opts: eval_config(**opts))


def quality_table(ev: dict) -> Table:
    metrics = list(ev["metrics"])
    t = Table(title=f"{ev['checkpoint']}: samples vs {ev['n_reference']} held-out points "
                    f"(n={ev['n']}, seed {ev['seed']})", title_justify="left")
    for col in ("solver", "NFE", *(m.upper() for m in metrics)):
        t.add_column(col, justify="right")
    for v in ev["quality"].values():
        t.add_row(f"{ev['solver']} {v['steps']}", str(v["nfe"]), *(f"{v[m]:.4g}" for m in metrics))
    r = ev["reference"]
    t.add_row(f"dopri5 rtol {r['rtol']:g}", str(r["nfe"]), *(f"{r[m]:.4g}" for m in metrics))
    return t


@evaluation_options
def evaluate(
    config: EvalConfig,
    ckpt: Ckpt,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write eval.json (default: the checkpoint folder).")] = None,
    features_dir: FeaturesDir = None,
    recompute: Annotated[bool, typer.Option(help="Ignore a cached eval.json with the same arguments.")] = False,
):
    """Evaluate a checkpoint: quality at each NFE, an adaptive reference, straightness."""
    with ProgressCallback("eval", "solve") as cb:
        ev = evaluate_checkpoint(ckpt, config, out=out, features_dir=features_dir,
                                 reuse=not recompute, callback=cb)
    con = Console()
    con.print(quality_table(ev))
    con.print(path_table("path metrics (transport cost vs exact OT cost of the same endpoints)",
                         ev["path"]))
    if ev.get("classifier") and "test_accuracy" in ev["classifier"]:
        con.print(f"FD features: {ev['classifier']['dataset']} classifier, held-out accuracy "
                  f"{ev['classifier']['test_accuracy']:.1%}")
    where = out or Path(ev["checkpoint"]) / "eval.json"
    con.print(f"{'cached' if ev.get('cached') else 'wrote'} {where}")
