"""Write the trajectory explorer page of a finished ``rectflow run`` (every model folder of the
run: rf1, rf2, ..., distill) and, with --screenshot, a PNG of it taken by headless Chromium.

    python benchmarks/explorer_page.py checkpoints/moons-run --out moons-explorer.html \\
        --screenshot docs/explorer.png --view "model=rf1&choice=euler-100&t=0.7"
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rectflow.checkpoint import Checkpoint, read_json
from rectflow.data import load_dataset
from rectflow.evaluation import noise, reference_data
from rectflow.explore import trajectories, write_page

CHOICES = [("euler", 1), ("euler", 2), ("euler", 8), ("euler", 100)]


def models_of(run: Path) -> dict[str, Checkpoint]:
    stages = read_json(run / "run.json")["stages"]
    found = {name: run / s["path"] for name, s in stages.items() if "path" in s}
    return {name: Checkpoint(p) for name, p in found.items() if (p / "config.json").is_file()}


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
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--view", default="t=0.7", help="initial view, e.g. model=rf1&t=0.5")
    ap.add_argument("--size", default="1280,860", help="screenshot window size")
    a = ap.parse_args()
    cks = models_of(a.run)
    first = next(iter(cks.values()))
    dataset = load_dataset(first.config["data"], split="test")
    x0 = noise(a.n, first.shape, a.seed, "explorer-noise")
    ref = reference_data(dataset, 2 * a.n, a.seed)
    start = time.time()
    data = trajectories({k: ck.load_model() for k, ck in cks.items()}, x0, CHOICES,
                        reference=ref)
    page = write_page(data, a.out, title=f"rectflow trajectory explorer: {a.run.name}")
    print(f"{page}: {page.stat().st_size} bytes, {len(cks)} models x {len(CHOICES)} samplers, "
          f"{time.time() - start:.1f} s")
    if a.screenshot:
        screenshot(page, a.screenshot, a.view, a.size)
        print(f"{a.screenshot}: screenshot of #{a.view}")


if __name__ == "__main__":
    main()
