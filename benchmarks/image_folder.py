"""Peak memory and time of ``rectflow train --data FOLDER`` with the default options.

Writes 500 16x16 RGB PNGs (coloured discs on black, seeded) to a temporary folder, runs the
CLI on it in a child process with every default (so resolution, channels, batch and model come
from the data and the image recipe), and prints the child's peak RSS and wall time, split into
training and the evaluation that follows it (``eval.json``'s ``seconds``), and the lines the
run printed about what it chose. ``--train-steps`` shortens the run (the default is the
option's default); other arguments after ``--`` go to ``rectflow train`` as they are.

    python benchmarks/image_folder.py [--train-steps 300] [--keep DIR] [-- --threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rectflow import smoke

N, SIZE = (64 if smoke.on() else 500), 16


def write_pngs(folder: Path, n: int = N, size: int = SIZE) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cx, cy = rng.uniform(size / 4, 3 * size / 4, 2)
        r = rng.uniform(size / 8, size / 3)
        img = np.zeros((size, size, 3), np.uint8)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(60, 256, 3)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="Work here instead of a temp dir.")
    ap.add_argument("rest", nargs="*", help="More `rectflow train` arguments (after --).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        pics = write_pngs(work / "pngs")
        out = work / "rf1"
        cmd = [sys.executable, "-m", "rectflow.cli.main", "train", "--data", str(pics),
               "--out", str(out), "--overwrite", *args.rest]
        if args.train_steps is not None:
            cmd += ["--train-steps", str(args.train_steps)]
        start = time.perf_counter()
        env = {**os.environ, "COLUMNS": "200"}   # one note per line
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if run.returncode:
            sys.exit(f"rectflow train failed ({run.returncode}):\n{run.stderr[-2000:]}")
        card = json.loads((out / "config.json").read_text())
        report = out / "eval.json"
        eval_s = json.loads(report.read_text())["seconds"] if report.is_file() else 0.0
        said = [" ".join(line.split()) for line in run.stdout.splitlines()   # notes: stdout
                if line.startswith(("threads:", "image defaults", "batch_size", "images "))]
        print("\n".join(said))
        print(f"data {N} PNGs {SIZE}x{SIZE}: shape {card['shape']}, batch "
              f"{card['train']['batch_size']}, U-Net width {card['model'].get('width')}, "
              f"{card['steps_done']} steps")
        print(f"peak RSS {peak / 1e9:.2f} GB; wall {wall:.1f} s = training and startup "
              f"{wall - eval_s:.1f} s + evaluation {eval_s:.1f} s "
              f"({eval_s / max(wall - eval_s, 1e-9):.0%} of the rest)")


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["--keep", "{tmp}"]]


if __name__ == "__main__":
    main()
