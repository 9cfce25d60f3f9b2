"""How smooth in t is v(x, t)? dopri5's cost and accuracy on moons for two time embeddings.

For each time-embedding setting (``legacy``: t scaled by 1000 as before the scale was a config
field; ``new``: the recorded default), trains a 1-rectified flow, couples it, reflows once,
and for both models reports, on the same seeded noise:

* dopri5 (rtol = atol = 1e-5): NFE per sample (mean and max) and its endpoint error against a
  1000-step RK4 solution, as max |error| and as max |error| / (atol + rtol |z_ref|) (the
  error in units of the tolerance; <= 10 is the bar);
* W2 at 100 Euler steps against held-out moons (quality must not suffer).

Models are cached in ``--out`` and reused when complete.

    OMP_NUM_THREADS=1 python benchmarks/dopri5_smoothness.py [--out /tmp/dopri5-smooth]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rectflow import checkpoint as ckpt
from rectflow import stages
from rectflow.data import load_dataset
from rectflow.evaluation import noise, reference_data
from rectflow.metrics import w2
from rectflow.models.embedding import DEFAULT_TIME_SCALE, LEGACY_TIME_SCALE
from rectflow.pairgen import CoupleConfig
from rectflow.solvers import solve
from rectflow.training import TrainConfig

SETTINGS = {"legacy": {"time_scale": LEGACY_TIME_SCALE},
            "new": {"time_scale": DEFAULT_TIME_SCALE}}
TOL = 1e-5


def _done(path: Path) -> bool:
    return (path / ckpt.CONFIG).is_file() and ckpt.Checkpoint(path).complete


def build(root: Path, model: dict, args) -> dict[str, Path]:
    rf1, pairs, rf2 = root / "rf1", root / "pairs1", root / "rf2"
    if not _done(rf1):
        stages.train(rf1, "moons", model=model, overwrite=True, evaluate=False,
                     config=TrainConfig(steps=args.train_steps))
    stages.couple(rf1, pairs, CoupleConfig(n=args.pairs))
    if not _done(rf2):
        cfg = stages.reflow_defaults()
        cfg.steps = args.reflow_steps
        stages.reflow(pairs, rf2, config=cfg, overwrite=True, evaluate=False)
    return {"1-RF": rf1, "2-RF": rf2}


@torch.inference_mode()
def measure(path: Path, n: int, seed: int) -> dict:
    model = ckpt.Checkpoint(path).load_model(ema=True).eval()
    x0 = noise(n, (2,), seed)
    ref = solve(model, x0, method="rk4", steps=1000).x
    sol = solve(model, x0, method="dopri5", rtol=TOL, atol=TOL)
    err = (sol.x - ref).abs()
    data = reference_data(load_dataset({"name": "moons"}, "test"), n, seed)
    euler = solve(model, x0, method="euler", steps=100).x
    return {"nfe": sol.nfe, "nfe_max": getattr(sol, "nfe_max", sol.nfe),
            "err": float(err.max()), "err_tol": float((err / (TOL + TOL * ref.abs())).max()),
            "w2": w2(euler, data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/dopri5-smooth")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--reflow-steps", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--n", type=int, default=1000, help="samples measured")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for name in args.settings.split(","):
        model = SETTINGS[name]
        for label, path in build(Path(args.out) / name, model, args).items():
            rows.append((name, model["time_scale"], label, measure(path, args.n, args.seed)))
    print(f"moons, {args.n} samples, dopri5 rtol=atol={TOL:g} vs RK4 x 1000 steps; "
          f"W2 at 100 Euler steps vs {args.n} held-out points")
    print(f"{'setting':8} {'time_scale':>10} {'model':5} {'NFE mean':>9} {'NFE max':>8} "
          f"{'max|err|':>10} {'err/tol':>8} {'W2@100':>8}")
    for name, scale, label, r in rows:
        print(f"{name:8} {scale:10g} {label:5} {r['nfe']:9.1f} {r['nfe_max']:8.0f} "
              f"{r['err']:10.2e} {r['err_tol']:8.2f} {r['w2']:8.4f}")


if __name__ == "__main__":
    main()
