"""Each library as its users would run it: its own network and documented defaults, equal
optimizer steps, batch and pairs, on the three 2-D targets, over seeds (issue 19).

    python benchmarks/peers.py --own run --shard 0 --of 2 &   # two processes, one per core
    python benchmarks/peers.py --own run --shard 1 --of 2
    python benchmarks/peers.py --own table --write            # -> benchmarks/OWN_DEFAULTS.md

``benchmarks/peers.py`` without ``--own`` runs every library on one shared network and one
(x0, x1, t) stream, which measures loop speed; this mode measures what each library's defaults
give. What "own defaults" means for each row (``LIBRARIES``):

* **rectflow**: ``rectflow.train(target, steps=S, seed=s)`` with nothing else given; then
  ``couple`` (50,000 pairs), ``rectflow.reflow`` and ``rectflow.distill`` (on round-2 pairs,
  initialised from round 2) with nothing but steps and seed.
* **TorchCFM 1.0.7**: its README's recipe: ``torchcfm.models.MLP(dim=2, time_varying=True)``
  (3 hidden layers of 64, SELU), ``ConditionalFlowMatcher(sigma=0.0)``, ``Adam`` at its
  default learning rate (1e-3), no EMA. TorchCFM has no reflow or distillation: its 2-RF row
  is a plain reflow of its 1-RF (same matcher on the 1-RF's pairs, initialised from it) and
  its student a plain distillation (t = 0 on the 2-RF's pairs, initialised from the 2-RF).
* **Meta flow_matching 1.0.10**: its 2-D example's recipe: an MLP of 4 hidden layers of 512
  with Swish and t concatenated, ``AffineProbPath(CondOTScheduler())``, t ~ U(0, 1), Adam 1e-3,
  no EMA.
* **lucidrains rectified-flow-pytorch 0.14.0**: ``RectifiedFlow`` with its defaults (velocity
  prediction, MSE, t ~ U(0, 1); data rescaling off, as 2-D points are not [0, 1] images) and
  its ``Trainer``'s recipe (Adam 3e-4, gradient norm clipped to 0.5, ``ema_pytorch.EMA`` with
  its defaults, EMA weights evaluated). It ships no network for vectors, so it runs on Meta's
  example MLP above.

Every network is scored the same way (:mod:`scoring`): exact W2 of its samples (Euler 1, 2 and
4 steps; RK4 100 steps; a student at its one step) against fresh target points, mean ± std over
the seeds, beside the floor, with ties marked.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scoring  # noqa: E402

TARGETS = ("moons", "8gaussians", "checkerboard")
SEEDS = (0, 1, 2)
STEPS, BATCH, PAIRS, N = 800, 2048, 50_000, 2000
PAIR_SOLVER = ("rk4", 32)      # rectflow couple's default, used for every library's pairs
ROWS = {   # key -> (label, what it is)
    "rectflow rf1": "1-RF",
    "rectflow rf2": "2-RF (reflow)",
    "rectflow distill": "2-RF distilled, 1 step",
    "torchcfm rf1": "1-RF",
    "torchcfm rf2": "2-RF (plain reflow)",
    "torchcfm distill": "2-RF distilled (plain), 1 step",
    "meta rf1": "1-RF",
    "lucidrains rf1": "1-RF",
}
LIBRARIES = ("rectflow", "torchcfm", "meta", "lucidrains")
ONE_STEP = (scoring.COLUMNS[0],)


def quiet(event: dict) -> None:
    pass


# ------------------------------------------------------------------------------- rectflow
def run_rectflow(target: str, seed: int, work: Path) -> list[dict]:
    import rectflow
    rf1 = rectflow.train(target, out=work / "rf1", steps=STEPS, seed=seed, evaluate=False,
                         callback=quiet)
    rf1.couple(work / "pairs1", n=PAIRS, seed=seed, callback=quiet)
    rf2 = rectflow.reflow(work / "pairs1", out=work / "rf2", steps=STEPS, seed=seed,
                          evaluate=False, callback=quiet)
    rf2.couple(work / "pairs2", n=PAIRS, seed=seed + 1000, callback=quiet)
    student = rectflow.distill(work / "pairs2", out=work / "distill", steps=STEPS, seed=seed,
                               init=work / "rf2", evaluate=False, callback=quiet)
    return [("rectflow rf1", scoring.score_flow(rf1, target, N, seed)),
            ("rectflow rf2", scoring.score_flow(rf2, target, N, seed)),
            ("rectflow distill", scoring.score_flow(student, target, N, seed, ONE_STEP))]


# ------------------------------------------------------------------------------- the peers
def _stream(target: str, seed: int):
    """(x0, x1) batches of N(0, I) and the target, the same draws for every library."""
    from rectflow.couplings import IndependentPairs
    from rectflow.data import load_dataset
    pairs = IndependentPairs(load_dataset({"name": target}), seed)
    return lambda step: pairs.batch(step, BATCH)


def _pairs(velocity, seed: int):
    """PAIRS (x0, z1) pairs of a trained velocity field, from seeded noise."""
    import torch
    from rectflow.evaluation import noise
    from rectflow.solvers import solve
    x0 = noise(PAIRS, (2,), seed, "bench-pairs")
    with torch.no_grad():
        z1 = torch.cat([solve(velocity, x0[i:i + 4096], method=PAIR_SOLVER[0],
                              steps=PAIR_SOLVER[1]).x for i in range(0, PAIRS, 4096)])
    return x0, z1


def _paired(x0, z1, seed: int):
    import torch
    from rectflow.seeding import generator

    def batch(step):
        idx = torch.randint(0, x0.shape[0], (BATCH,), generator=generator(seed, "bench", step))
        return x0[idx], z1[idx]
    return batch


def _adam_loop(net, loss_of, batches, lr: float, seed: int) -> None:
    """``STEPS`` Adam steps at a constant ``lr`` on ``loss_of(x0, x1)``, the global generator
    seeded (peers draw t with ``torch.rand``)."""
    import torch
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for step in range(STEPS):
            loss = loss_of(*batches(step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


class TimeCat:
    """A network of [x, t] called as v(x, t)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x, t):
        import torch
        return self.net(torch.cat([x, t.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1)], -1))


def run_torchcfm(target: str, seed: int, work: Path) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
    from torchcfm.models import MLP
    torch.manual_seed(seed)
    net = MLP(dim=2, time_varying=True)
    fm = ConditionalFlowMatcher(sigma=0.0)
    v = TimeCat(net)

    def cfm_loss(x0, x1):
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        return F.mse_loss(v(xt, t), ut)

    _adam_loop(net, cfm_loss, _stream(target, seed), 1e-3, seed)
    rows = [("torchcfm rf1", scoring.score(v, target, N, seed))]
    _adam_loop(net, cfm_loss, _paired(*_pairs(v, seed), seed), 1e-3, seed + 1)
    rows.append(("torchcfm rf2", scoring.score(v, target, N, seed)))
    zeros = torch.zeros(BATCH)
    _adam_loop(net, lambda x0, z1: F.mse_loss(v(x0, zeros), z1 - x0),
               _paired(*_pairs(v, seed + 1000), seed + 1), 1e-3, seed + 2)
    rows.append(("torchcfm distill", scoring.score(v, target, N, seed, ONE_STEP)))
    return rows


def meta_mlp():
    """Meta flow_matching's 2-D example network: [x, t] -> 4 x (Linear 512, Swish) -> 2."""
    from torch import nn
    layers, width = [], 3
    for _ in range(4):
        layers += [nn.Linear(width, 512), nn.SiLU()]
        width = 512
    return nn.Sequential(*layers, nn.Linear(width, 2))


def run_meta(target: str, seed: int, work: Path) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler
    torch.manual_seed(seed)
    net = meta_mlp()
    v = TimeCat(net)
    path = AffineProbPath(scheduler=CondOTScheduler())

    def loss(x0, x1):
        s = path.sample(x_0=x0, x_1=x1, t=torch.rand(x0.shape[0]))
        return F.mse_loss(v(s.x_t, s.t), s.dx_t)

    _adam_loop(net, loss, _stream(target, seed), 1e-3, seed)
    return [("meta rf1", scoring.score(v, target, N, seed))]


def run_lucidrains(target: str, seed: int, work: Path) -> list[dict]:
    import torch
    from ema_pytorch import EMA
    from rectified_flow_pytorch import RectifiedFlow
    torch.manual_seed(seed)
    net = meta_mlp()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, times):
            return TimeCat(self.net)(x, times)

    flow = RectifiedFlow(Net(), data_shape=(2,), data_normalize_fn=None,
                         data_unnormalize_fn=None)
    ema = EMA(flow, forward_method_names=("sample",))
    opt = torch.optim.Adam(flow.parameters(), lr=3e-4)
    batches = _stream(target, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for step in range(STEPS):
            x0, x1 = batches(step)
            loss = flow(x1, noise=x0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 0.5)
            opt.step()
            ema.update()
    v = TimeCat(ema.ema_model.model.net)
    return [("lucidrains rf1", scoring.score(v, target, N, seed))]


RUNNERS = {"rectflow": run_rectflow, "torchcfm": run_torchcfm, "meta": run_meta,
           "lucidrains": run_lucidrains}


def run(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    out = Path(args.results)
    done = {(r["target"], r["seed"], r["row"]) for r in scoring.read(out)}
    libs = args.libs.split(",") if args.libs else LIBRARIES
    jobs = [(lib, t, s) for lib in libs for t in TARGETS for s in SEEDS]
    for i, (lib, t, s) in enumerate(jobs):
        if i % args.of != args.shard or (t, s, f"{lib} rf1") in done:
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rows = RUNNERS[lib](t, s, Path(tmp))
        secs = time.perf_counter() - started
        for key, w in rows:
            scoring.append(out, {"target": t, "seed": s, "row": key, "w2": w, "job_s": secs})
        print(f"[{args.shard}] {lib} {t} seed {s}: {secs:.0f} s", file=sys.stderr, flush=True)


def table(args) -> str:
    rows = scoring.read(Path(args.results))
    lines = ["# Each library at its own defaults (issue 19)", "",
             "Regenerate: `python benchmarks/peers.py --own run` (two shards; see "
             "`benchmarks/own_defaults.py`) then `python benchmarks/peers.py --own table "
             "--write`.", "",
             f"Equal budget: {STEPS} optimizer steps per stage, batch {BATCH}, {PAIRS:,} pairs "
             f"per reflow round (RK4, {PAIR_SOLVER[1]} steps), seeds "
             f"{', '.join(map(str, SEEDS))}. Each library otherwise uses its own network, "
             "optimizer settings, time distribution and EMA (see the script's docstring). "
             f"Cells: exact W2 between {N:,} samples and {N:,} fresh target points (data "
             "units), mean ± std over the seeds. In each column, `*` marks the best and `~` "
             "a tie with it (difference within 2·sqrt(s₁² + s₂²)); one-step students are "
             "ranked in the 1-step column only. Columns: Euler with 1, 2, 4 steps (= NFE); RK4 "
             "with 100 steps (400 NFE).", ""]
    cols = [c[0] for c in scoring.COLUMNS]
    for t in TARGETS:
        sel = [r for r in rows if r["target"] == t]
        if not sel:
            continue
        res = scoring.summaries(sel, "row")
        f = scoring.floor(t, N)
        lines += [f"## {t} (floor {scoring.cell(f)})", "",
                  "| library | model | " + " | ".join(f"W2 {c}" for c in cols) + " |",
                  "|---|---" + "|---" * len(cols) + "|"]
        mk = {c: scoring.marks({k: v[c] for k, v in res.items() if c in v}) for c in cols}
        for key in ROWS:
            if key not in res:
                continue
            lib = key.split()[0]
            cells = [scoring.cell(res[key][c], mk[c][key]) if c in res[key] else "—"
                     for c in cols]
            lines.append(f"| {lib} | {ROWS[key]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--shard", type=int, default=0)
    r.add_argument("--of", type=int, default=1)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--libs", default="", help="comma-separated subset of " + ",".join(LIBRARIES))
    t = sub.add_parser("table")
    t.add_argument("--write", action="store_true", help="write benchmarks/OWN_DEFAULTS.md")
    for q in (r, t):
        q.add_argument("--results", default=str(HERE / "own_defaults.jsonl"))
    args = p.parse_args(argv)
    if args.cmd == "run":
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        run(args)
    else:
        text = table(args)
        print(text)
        if args.write:
            (HERE / "OWN_DEFAULTS.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
