"""The CIFAR-10 pipeline (train, couple, reflow, distill) on one or more GPUs, timed.

Each stage runs in its own launch, as docs/guarantees.md says: ``torchrun --standalone
--nproc_per_node N`` (N > 1) or one plain process, each process running the stage through the
Python API so it can report its own figures. Printed per stage: wall time (with start-up),
samples/s (training stages: the median of the logged rates; couple: pairs/s), peak memory
(``torch.cuda.max_memory_allocated`` on rank 0), and at the end the 1-step and 2-step quality
of the three models (one evaluation seed, no adaptive reference). Data comes from a local copy
(``--data-root`` holding ``cifar-10-batches-bin``); nothing is downloaded.

    python benchmarks/gpu_pipeline.py --data-root data --out runs/gpu [--nproc 4]
        [--mixed-precision bf16] [--compile] [--channels-last]
    python benchmarks/gpu_pipeline.py --dry-run --out /tmp/gpu   # tiny, on CPU, made-up data

Without CUDA it refuses (one line, exit 2) unless ``--dry-run``: then it writes a tiny
CIFAR-10-format folder and runs every stage at toy sizes on the CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SMOKE_RUNS = [["--dry-run", "--out", "{tmp}/gpu"]]
STAGES = ("train", "couple", "reflow", "distill")
FOLDERS = {"train": "rf1", "couple": "pairs", "reflow": "rf2", "distill": "distill"}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", help="folder holding cifar-10-batches-bin")
    p.add_argument("--out", required=True, help="new work folder (refused if it has files)")
    p.add_argument("--nproc", type=int, help="processes (default: every visible GPU)")
    p.add_argument("--train-steps", type=int, default=20_000)
    p.add_argument("--reflow-steps", type=int, default=10_000)
    p.add_argument("--distill-steps", type=int, default=5_000)
    p.add_argument("--pairs", type=int, default=50_000, help="pairs coupled by the teacher")
    p.add_argument("--batch-size", type=int, default=128, help="global batch")
    p.add_argument("--width", type=int, help="U-Net base channels (default: the recipe's)")
    p.add_argument("--eval-n", type=int, default=2000)
    p.add_argument("--mixed-precision", default="bf16", choices=("no", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU, made-up data")
    p.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def tiny_cifar(root: Path, per_batch: int = 8) -> Path:
    """Random images in CIFAR-10's binary format: 5 train batches and a test batch of rows
    ``label byte + 3072 pixel bytes``."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rows = np.concatenate([rng.integers(0, 10, (per_batch, 1)),
                               rng.integers(0, 256, (per_batch, 3072))], 1)
        (folder / name).write_bytes(rows.astype(np.uint8).tobytes())
    return root


# ----------------------------------------------------------------------- one stage (worker)
def worker(stage: str, work: Path) -> None:
    import torch
    from rectflow.options import CoupleConfig
    from rectflow.stages import train as st
    a = json.loads((work / "args.json").read_text())
    train_opts = {"batch_size": a["batch_size"], "mixed_precision": a["mixed_precision"],
                  "compile": a["compile"], "channels_last": a["channels_last"],
                  "log_every": 10}
    steps = {"train": a["train_steps"], "reflow": a["reflow_steps"],
             "distill": a["distill_steps"]}
    out = work / FOLDERS[stage]
    t0 = time.perf_counter()
    if stage == "train":
        st.train(out, "cifar10", data_root=a["data_root"], evaluate=False,
                 model={"width": a["width"]} if a["width"] else None,
                 options={**train_opts, "train_steps": steps["train"]})
    elif stage == "couple":
        st.couple(work / "rf1", out, CoupleConfig(n=a["pairs"], batch_size=a["batch_size"] * 4,
                                                  **a["couple"]))
    else:
        run = st.reflow if stage == "reflow" else st.distill
        run(work / "pairs", out, evaluate=False,
            options={**train_opts, "train_steps": steps[stage]})
    seconds = time.perf_counter() - t0
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        (work / f".{stage}-figures.json").write_text(json.dumps(
            {"seconds": seconds, "peak_bytes": peak}))


def rate(work: Path, stage: str, a: dict, seconds: float) -> float:
    if stage == "couple":
        return a["pairs"] / seconds
    log = work / FOLDERS[stage] / "metrics.jsonl"
    rates = [json.loads(ln)["samples_per_s"] for ln in log.read_text().splitlines() if ln]
    return statistics.median(rates)


# ------------------------------------------------------------------------------ the driver
def launch(stage: str, work: Path, nproc: int) -> float:
    me = [str(Path(__file__).resolve()), "--out", str(work), "--worker", stage]
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(nproc), *me] if nproc > 1 else [sys.executable, *me])
    t0 = time.perf_counter()
    r = subprocess.run(cmd)
    if r.returncode:
        sys.exit(f"gpu_pipeline: {stage} failed (exit {r.returncode}); see its output above")
    return time.perf_counter() - t0


def quality(work: Path, a: dict, device: str) -> dict:
    from rectflow.analysis.evaluate import evaluate_checkpoint
    from rectflow.options import EvalConfig
    cfg = EvalConfig(steps=(1, 2), n=a["eval_n"], seeds=1, adaptive=False)
    out = {}
    for stage in ("train", "reflow", "distill"):
        rep = evaluate_checkpoint(work / FOLDERS[stage], cfg, device=device)
        out[stage] = {k: {m: v for m, v in rep.quality[k].items()
                          if isinstance(v, float) and not m.endswith("_std")}
                    for k in ("1", "2")}
    return out


def main(argv=None) -> int:
    args = parse(argv)
    work = Path(args.out)
    if args.worker:
        worker(args.worker, work)
        return 0
    import torch
    if not torch.cuda.is_available() and not args.dry_run:
        print("gpu_pipeline: no CUDA device here; run it on a GPU machine, or add --dry-run "
              "for a tiny CPU run", file=sys.stderr)
        return 2
    if work.exists() and any(work.iterdir()):
        print(f"gpu_pipeline: {work} already has files; give a new --out", file=sys.stderr)
        return 2
    if args.dry_run:
        args.data_root = str(tiny_cifar(work / "data"))
        args.train_steps = args.reflow_steps = args.distill_steps = 3
        args.pairs, args.batch_size, args.eval_n = 32, 16, 16
        args.width, args.mixed_precision = args.width or 8, "no"
        # a model call holds eval_chunk rows whatever n is: 1024 such images cost minutes here
        args.couple = {"solver": "euler", "steps": 4, "eval_chunk": 16}
    elif not args.data_root or not (Path(args.data_root) / "cifar-10-batches-bin").is_dir():
        print("gpu_pipeline: --data-root must hold cifar-10-batches-bin (the binary CIFAR-10 "
              "archive, unpacked)", file=sys.stderr)
        return 2
    args.couple = getattr(args, "couple", {})
    nproc = args.nproc or (1 if args.dry_run else torch.cuda.device_count())
    work.mkdir(parents=True, exist_ok=True)
    a = vars(args)
    (work / "args.json").write_text(json.dumps(a))
    rows = []
    for stage in STAGES:
        wall = launch(stage, work, nproc)
        fig = json.loads((work / f".{stage}-figures.json").read_text())
        peak = fig["peak_bytes"]
        rows.append((stage, wall, rate(work, stage, a, fig["seconds"]),
                     "-" if peak is None else f"{peak / 2**30:.2f} GiB"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"\nCIFAR-10 pipeline on {nproc} x {device}{' (dry run)' if args.dry_run else ''}, "
          f"batch {args.batch_size}, mixed precision {args.mixed_precision}, compile "
          f"{args.compile}, channels_last {args.channels_last}")
    print(f"{'stage':<8} {'wall s':>8} {'samples/s':>10} {'peak mem':>10}")
    for stage, wall, r, peak in rows:
        print(f"{stage:<8} {wall:8.1f} {r:10.0f} {peak:>10}")
    for stage, q in quality(work, a, device).items():
        for k, metrics in q.items():
            print(f"{stage:<8} {k}-step  " + "  ".join(f"{m} {v:.4g}" for m, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
