"""The two data-to-data examples of docs/transport.md, run end to end with the Python API.

    OMP_NUM_THREADS=1 python benchmarks/transport_examples.py moons  runs/transport-moons
    OMP_NUM_THREADS=1 python benchmarks/transport_examples.py digits runs/transport-digits

``moons``: 8gaussians -> moons, rounds 1..3 (train, then couple + reflow twice); per round the
coupling's straightness and transport cost against the exact OT cost of the same source points
and the OT cost between source and target samples, the 1-step W2, and the round-trip error of
inversion. ``digits``: digits of class 3 -> class 8, two rounds, and a grid of held-out 3s
beside their 1-step and 100-step translations. Writes ``results.json`` and pictures into the
run folder; docs/transport.md quotes them.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from rectflow.analysis import figures as report
from rectflow.stages import train as stages
from rectflow.records.checkpoint import Checkpoint
from rectflow.data import load_dataset
from rectflow.analysis.evaluate import evaluate_checkpoint, reference_data
from rectflow.options import CoupleConfig, EvalConfig
from rectflow.core.solvers import solve
from rectflow.data.sources import initial_points
from rectflow.stages.transport import round_trip

SETUPS = {
    "moons": dict(source="8gaussians", data="moons", model={"hidden": 128, "depth": 3},
                  train=dict(steps=3000, batch_size=1024, lr=1e-3, save_every=3000),
                  reflow=dict(steps=2000, batch_size=1024, save_every=2000),
                  pairs=20_000, rounds=3),
    "digits": dict(source="digits:3", data="digits:8", model={"width": 16},
                   train=dict(steps=1000, batch_size=64, lr=2e-3, save_every=1000),
                   reflow=dict(steps=600, batch_size=64, save_every=600),
                   pairs=2048, rounds=2),
}


def _done(model: Path) -> bool:
    return (model / "config.json").is_file() and Checkpoint(model).complete


def main(kind: str, root: Path) -> None:
    s = SETUPS[kind]
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    models = [root / "rf1"]
    if not _done(models[0]):
        stages.train(models[0], s["data"], model=s["model"],
                     options={**s["train"], "source": s["source"]}, evaluate=False,
                     overwrite=models[0].is_dir())
    rows = []
    for r in range(1, s["rounds"] + 1):
        ck = models[-1]
        pairs = root / f"pairs{r}"
        m = stages.couple(ck, pairs, CoupleConfig(n=s["pairs"], solver="rk4", steps=16,
                                                  shard_size=s["pairs"]))
        ev = evaluate_checkpoint(ck, EvalConfig(steps=(1, 2, 4, 8), n=1000, seeds=1,
                                                adaptive=False, path_steps=100))
        test = load_dataset(Checkpoint(ck).card.data, "test")
        x1 = reference_data(test, 300, 0)
        rt = round_trip(Checkpoint(ck).velocity(), x1)
        rows.append({"round": r, "model": ck.name, "coupling": m.metrics,
                     "w2": {k: v["w2"] for k, v in ev.quality.items()}, "path": ev.path,
                     "round_trip": rt, "minutes": (time.perf_counter() - t0) / 60})
        print(json.dumps(rows[-1]["coupling"]), rows[-1]["w2"], flush=True)
        if r < s["rounds"]:
            nxt = root / f"rf{r + 1}"
            if not _done(nxt):
                stages.reflow(pairs, nxt, options=s["reflow"], evaluate=False,
                              overwrite=nxt.is_dir())
            models.append(nxt)
    (root / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    pictures(kind, root, models)


def pictures(kind: str, root: Path, models: list[Path]) -> None:
    rows = json.loads((root / "results.json").read_text())
    if kind == "moons":
        cards = [Checkpoint(p) for p in models]
        x0 = initial_points(cards[0].card, 300, 0, "docs")
        panels = [(f"round {i + 1}", solve(c.velocity(), x0, steps=100, record=True).trajectory)
                  for i, c in enumerate(cards)]
        ref = reference_data(load_dataset(cards[0].card.data, "test"), 1000, 0)
        report.save_trajectories(panels, root / "transport_moons.png", reference=ref)
        plt, (fig, ax) = report._figure(figsize=(4.6, 3.2))
        r = [row["round"] for row in rows]
        for key, lab in (("transport_cost_subsample", "transport cost of the flow"),
                         ("ot_cost", "OT cost of its endpoints"),
                         ("data_ot_cost", "OT cost source vs target samples")):
            ax.plot(r, [row["coupling"][key] for row in rows], "-o", label=lab)
        ax.set_xticks(r), ax.set_xlabel("round"), ax.set_ylabel("mean squared distance")
        ax.legend(fontsize=7)
        report.save_figure(fig, root / "transport_costs.png")
    else:
        from rectflow.data.images import save_image_grid
        c = Checkpoint(models[-1])
        x0 = initial_points(c.card, 12, 0, "docs")
        v = c.velocity()
        one, many = solve(v, x0, steps=1).x, solve(v, x0, steps=100).x
        tiles = torch.stack([x0, one.clamp(-1, 1), many.clamp(-1, 1)], 1).flatten(0, 1)
        save_image_grid(tiles, root / "transport_digits.png", nrow=6)


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["moons", "{tmp}/t"]]


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
