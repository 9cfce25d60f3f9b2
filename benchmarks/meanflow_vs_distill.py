"""One-step quality of MeanFlow (from scratch and on round-2 pairs) against distillation, at
the same total of training steps.

From a preset (default ``moons-meanflow``) it runs, in ``--out``:

    rf1      train (flow)                                  S1 steps
    pairs1   couple rf1
    rf2      reflow on pairs1 (flow)                       S2 steps, from rf1
    pairs2   couple rf2
    distill  distill k=1 on pairs2, from rf2               Sd steps       total S1 + S2 + Sd
    mf-rf3   reflow --objective meanflow on pairs2, rf2    Sd steps       total S1 + S2 + Sd
    mf1      train --objective meanflow                    S1 + S2 + Sd   total S1 + S2 + Sd

so every one-step model has had the same number of optimizer steps counting its teachers'
(the couple solves are extra for the pair-based ones and are printed beside). ``compare`` then
evaluates all five on the same noise and reference data over the preset's seeds (W2 with its
noise floor; rf1 at 100 steps is the flow it all starts from). Every stage is resumable: a
rerun skips finished folders.

    OMP_NUM_THREADS=1 python benchmarks/meanflow_vs_distill.py --out /tmp/mfbench \\
        [--preset moons-meanflow] [--pair-drop 0.0]

Measured (moons-meanflow: batch 512, S1 = 1500, S2 = Sd = 1000, couple 20,000 pairs with RK4 x
32; W2 to 1000 held-out points, mean ± std over seeds 0-2; 2-core CPU shared with other jobs,
11 min wall):

    model    steps (teachers incl.)  couple model calls  W2 @1        W2 @2   W2 @4   W2 @100
    rf1      1500                    0                   1.35 ± 0.02  0.606   0.353   0.212
    rf2      2500                    2,560,000           0.223 ± 0.01 0.214   0.213   0.215
    distill  3500                    5,120,000           0.216 ± 0.01 0.246   0.259   0.263
    mf-rf3   3500                    5,120,000           0.219 ± 0.02 0.217   0.217   0.219
    mf1      3500                    0                   0.269 ± 0.03 0.333   0.419   0.485
    noise floor (data vs data)                           0.167 ± 0.02

MeanFlow on round-2 pairs ties the distilled student at one step and, unlike it, stays as good
at 2, 4 and 100 interval steps. MeanFlow from scratch is 0.05 worse at one step (within twice
the spread) and gets worse with more steps: the published logit-normal(0.4, 1) times almost
never draw t or r near 0, so its short intervals near the noise end are barely trained.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rectflow.stages import presets, train as stages
from rectflow.records.checkpoint import Checkpoint
from rectflow.analysis.compare import compare, table
from rectflow.analysis.figures import markdown_table


def _done(folder: Path) -> bool:
    return (folder / "config.json").is_file() and Checkpoint(folder).complete


def run(preset: str, out: Path, pair_drop: float) -> dict:
    cfg = presets.resolve(preset)
    tr, rf = presets.train_config(cfg, "train"), presets.train_config(cfg, "reflow")
    ds = presets.train_config(cfg, "distill")
    total = tr.train_steps + rf.train_steps + ds.train_steps
    out.mkdir(parents=True, exist_ok=True)
    train_kw = dict(data_root=cfg["data_root"], download=cfg["download"], model=cfg["model"],
                    evaluate=False)

    def model(name: str, make) -> Path:
        if not _done(out / name):
            make(out / name, resume=(out / name / "config.json").is_file())
        return out / name

    def pairs(name: str, teacher: Path) -> Path:
        stages.couple(teacher, out / name, presets.couple_config(cfg))
        return out / name

    rf1 = model("rf1", lambda o, resume: stages.train(o, cfg["data"], options=tr,
                                                      resume=resume, **train_kw))
    p1 = pairs("pairs1", rf1)
    rf2 = model("rf2", lambda o, resume: stages.reflow(p1, o, options=rf, resume=resume,
                                                       evaluate=False))
    p2 = pairs("pairs2", rf2)
    dist = model("distill", lambda o, resume: stages.distill(p2, o, k=1, options=ds,
                                                             resume=resume, evaluate=False))
    mf_pairs = rf.replace(objective="meanflow", train_steps=ds.train_steps, pair_drop=pair_drop)
    mfr = model("mf-rf3", lambda o, resume: stages.reflow(p2, o, options=mf_pairs,
                                                          resume=resume, evaluate=False))
    mf_scratch = tr.replace(objective="meanflow", train_steps=total)
    mf1 = model("mf1", lambda o, resume: stages.train(o, cfg["data"], options=mf_scratch,
                                                      resume=resume, **train_kw))
    result = compare([rf1, rf2, dist, mfr, mf1], out / "compare", presets.eval_config(cfg),
                     overwrite=(out / "compare").exists()).to_json()
    couple_nfe = cfg["couple"]["n"] * {"euler": 1, "heun": 2, "rk4": 4}.get(
        cfg["couple"]["solver"], 0) * cfg["couple"]["steps"]
    budget = {"rf1": tr.train_steps, "rf2": tr.train_steps + rf.train_steps, "distill": total, "mf-rf3": total,
              "mf1": total}
    couples = {"rf1": 0, "rf2": 1, "distill": 2, "mf-rf3": 2, "mf1": 0}
    summary = []
    for r in result["rows"]:
        q1 = r["quality"]["1"]
        summary.append({"model": r["name"], "train_steps_total": budget[r["name"]],
                        "couple_model_calls": couples[r["name"]] * couple_nfe,
                        "w2_1step": q1["w2"], "w2_1step_std": q1.get("w2_std", 0.0)})
    result["budget"] = summary
    result["pair_filter"] = Checkpoint(mfr).card.parent.get("pair_filter")
    (out / "meanflow_vs_distill.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="moons-meanflow")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pair-drop", type=float, default=0.0)
    args = ap.parse_args()
    result = run(args.preset, args.out, args.pair_drop)
    headers, rows = table(result)
    print(markdown_table(headers, rows))
    fl = result["floors"]
    print(f"\none step, W2 over seeds {result['seeds']} (floor {fl['w2']:.3g} ± "
          f"{fl.get('w2_std', 0):.1g}):")
    print(markdown_table(["model", "training steps (teachers included)", "couple model calls",
                          "W2 @1"],
                         [[s["model"], s["train_steps_total"], f"{s['couple_model_calls']:,}",
                           f"{s['w2_1step']:.3g} ± {s['w2_1step_std']:.1g}"]
                          for s in result["budget"]]))
    if result["pair_filter"]:
        print(f"mf-rf3 pair filter: {result['pair_filter']}")


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--out", "{tmp}/mf"]]


if __name__ == "__main__":
    main()
