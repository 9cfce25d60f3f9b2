"""Write the trajectory explorer page of a finished ``rectflow run`` (every model folder of the
run: rf1, rf2, ..., distill; as ``rectflow explore --ckpt RUN``) and, with --screenshot, a PNG
of it taken by headless Chromium.

    python benchmarks/explorer_page.py checkpoints/moons-run --out moons-explorer.html \\
        --screenshot docs/explorer.png --view "model=diffusion&choice=euler-100&t=0.7"
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rectflow.analysis.explore import explore


def screenshot(page: Path, png: Path, view: str, size: str) -> None:
    chrome = shutil.which("chromium") or shutil.which("google-chrome")
    if chrome is None:
        raise SystemExit("no chromium on PATH for --screenshot")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chrome, "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={png.resolve()}", "--virtual-time-budget=3000",
                        page.resolve().as_uri() + "#" + view],
                       check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--view", default="t=0.7", help="initial view, e.g. model=rf1&t=0.5")
    ap.add_argument("--size", default="1280,860", help="screenshot window size")
    a = ap.parse_args()
    start = time.time()
    page, data = explore([a.run], a.out, n=a.n, seed=a.seed, overwrite=a.overwrite)
    print(f"{page}: {page.stat().st_size} bytes, {len(data['models'])} models x "
          f"{len(data['choices'])} samplers, {time.time() - start:.1f} s")
    if a.screenshot:
        screenshot(page, a.screenshot, a.view, a.size)
        print(f"{a.screenshot}: screenshot of #{a.view}")


# its tiny run under RECTFLOW_SMOKE=1 (tests/test_bench_smoke.py; see README.md here)
SMOKE_RUNS = [["-m", "rectflow.cli.main", "train", "--data", "moons", "--out", "{tmp}/rf1",
                "--no-eval"],
               ["{tmp}/rf1", "--out", "{tmp}/page.html", "--n", "16"]]


if __name__ == "__main__":
    main()
