"""How smooth in t is v(x, t)? dopri5's cost and accuracy on moons for two time embeddings.

For each time-embedding setting (``legacy``: t scaled by 1000 as before the scale was a config
field; ``new``: the recorded default), trains a 1-rectified flow, couples it, reflows once,
and for both models reports, on the same seeded noise:

* dopri5 (rtol = atol = 1e-5): NFE per sample (mean and max) and its endpoint error against a
  1000-step RK4 solution, per sample as max |error| / (atol + rtol |z_ref|) (the error in
  units of the tolerance; mean, median, 99th percentile and max over samples);
* W2 at 100 Euler steps against held-out moons over 3 evaluation seeds (mean ± std), beside
  the W2 floor at the same n and the tie groups of :func:`rectflow.core.metrics.tie_groups`
  (quality must not suffer).

Models are cached in ``--out`` and reused when complete.

    OMP_NUM_THREADS=1 python benchmarks/dopri5_smoothness.py [--out /tmp/dopri5-smooth]
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from rectflow.records import checkpoint as ckpt
from rectflow.stages import train as stages
from rectflow.data import load_dataset
from rectflow.core.seeding import noise
from rectflow.analysis.evaluate import reference_data
from rectflow.core.metrics import metric_floor, summarize, tie_groups, w2
from rectflow.models.embedding import DEFAULT_TIME_SCALE, LEGACY_TIME_SCALE
from rectflow.stages.couple import CoupleConfig
from rectflow.core.solvers import solve
from rectflow.training.loop import TrainConfig

SETTINGS = {"legacy": {"time_scale": LEGACY_TIME_SCALE},
            "new": {"time_scale": DEFAULT_TIME_SCALE}}
TOL = 1e-5


def _done(path: Path) -> bool:
    return (path / ckpt.CONFIG).is_file() and ckpt.Checkpoint(path).complete


def build(root: Path, model: dict, args) -> dict[str, Path]:
    rf1, pairs, rf2 = root / "rf1", root / "pairs1", root / "rf2"
    if not _done(rf1):
        stages.train(rf1, "moons", model=model, overwrite=True, evaluate=False,
                     options=TrainConfig(train_steps=args.train_steps))
    stages.couple(rf1, pairs, CoupleConfig(n=args.pairs))
    if not _done(rf2):
        cfg = stages.reflow_defaults()
        cfg.steps = args.reflow_steps
        stages.reflow(pairs, rf2, options=cfg, overwrite=True, evaluate=False)
    return {"1-RF": rf1, "2-RF": rf2}


@torch.inference_mode()
def measure(path: Path, n: int, seeds: int, ref_steps: int = 1000) -> dict:
    """dopri5 NFE as used (float32); its error in float64 against RK4 x ref_steps in float64 (a
    float32 RK4 x 1000 is itself only good to ~4e-5 from round-off); W2 over ``seeds`` seeds."""
    model = ckpt.Checkpoint(path).load_model(ema=True).eval()
    x0 = noise(n, (2,), 0)
    sol = solve(model, x0, method="dopri5", rtol=TOL, atol=TOL)
    m64, x64 = copy.deepcopy(model).double(), x0.double()
    ref = solve(m64, x64, method="rk4", steps=ref_steps).x
    err = ((solve(m64, x64, method="dopri5", rtol=TOL, atol=TOL).x - ref).abs()
           / (TOL + TOL * ref.abs())).max(1).values
    data = load_dataset({"name": "moons"}, "test")
    w2s = [w2(solve(model, noise(n, (2,), s), method="euler", steps=100).x,
              reference_data(data, n, s)) for s in range(seeds)]
    return {"nfe": sol.nfe, "nfe_max": sol.nfe_max, "err_mean": float(err.mean()),
            "err_median": float(err.median()), "err_q99": float(err.quantile(0.99)),
            "err_max": float(err.max()), "w2": summarize(w2s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/dopri5-smooth")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--reflow-steps", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--n", type=int, default=1000, help="samples measured")
    ap.add_argument("--seeds", type=int, default=3, help="evaluation seeds for W2")
    ap.add_argument("--reference-steps", type=int, default=1000, help="RK4 steps of z_ref")
    args = ap.parse_args()
    rows = []
    for name in args.settings.split(","):
        model = SETTINGS[name]
        for label, path in build(Path(args.out) / name, model, args).items():
            rows.append((name, model["time_scale"], label,
                         measure(path, args.n, args.seeds, args.reference_steps)))
    print(f"moons, {args.n} samples; dopri5 rtol=atol={TOL:g}: NFE per sample in float32; "
          "error per sample = max_d |z - z_ref| / (atol + rtol |z_ref|), float64, z_ref = "
          f"RK4 x {args.reference_steps} steps")
    print(f"{'setting':8} {'scale':>6} {'model':5} {'NFE mean':>8} {'max':>5} "
          f"{'err/tol mean':>12} {'median':>7} {'q99':>7} {'max':>8}   W2 @ 100 Euler steps")
    for name, scale, label, r in rows:
        print(f"{name:8} {scale:6g} {label:5} {r['nfe']:8.1f} {r['nfe_max']:5d} "
              f"{r['err_mean']:12.2f} {r['err_median']:7.2f} {r['err_q99']:7.2f} "
              f"{r['err_max']:8.2f}   {r['w2']}")
    floor = metric_floor(lambda k, g: load_dataset({"name": "moons"}).sample(k, g), args.n, w2)
    print(f"W2 floor (two draws of moons, n={args.n}): {floor}")
    for label in ("1-RF", "2-RF"):
        res = {f"{name} {lab}": r["w2"] for name, _, lab, r in rows if lab == label}
        print(f"{label} W2 tie groups (best first): {tie_groups(res, floor)}")


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--out", "{tmp}/d", "--settings", "new", "--n", "16", "--seeds", "1",
               "--reference-steps", "20"]]


if __name__ == "__main__":
    main()
