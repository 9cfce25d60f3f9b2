"""A second image set for the quality benchmarks, generated with known structure: 8 x 8 grey
images of one shape each (a horizontal or vertical bar, a square outline, a filled square, a
plus, a diagonal) at a random place, size and brightness on black, drawn by the explicit
seeded generator below. The labels (which shape) train rectflow's feature classifier on it
(:func:`rectflow.analysis.features.fit_classifier`), so samples get an FD as digits do.

The arrays are written once as uint8 ``.npy`` files under ``benchmarks/.features/shapes-data``
(what rectflow trains on: ``rectflow.train(str(path("train")))``), and are byte-identical for
the seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("horizontal bar", "vertical bar", "square outline", "filled square", "plus",
           "diagonal")
SIZE = 8
COUNTS = {"train": 3000, "test": 297}   # test: the n every image set is scored at
SEEDS = {"train": 0, "test": 1}
ROOT = Path(__file__).resolve().parent / ".features" / "shapes-data"


def _shape(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean SIZE x SIZE mask of one shape of class ``kind``."""
    m = np.zeros((SIZE, SIZE), dtype=bool)
    if kind in (0, 1):    # a bar 3-7 long, 1-2 thick
        length, thick = rng.integers(3, 8), rng.integers(1, 3)
        r, c = rng.integers(0, SIZE - thick + 1), rng.integers(0, SIZE - length + 1)
        m[r:r + thick, c:c + length] = True
        return m.T.copy() if kind == 1 else m
    if kind in (2, 3):    # a square: an outline 3-6 wide, or filled 2-4 wide
        side = rng.integers(3, 7) if kind == 2 else rng.integers(2, 5)
        r, c = rng.integers(0, SIZE - side + 1, size=2)
        m[r:r + side, c:c + side] = True
        if kind == 2:
            m[r + 1:r + side - 1, c + 1:c + side - 1] = False
        return m
    if kind == 4:         # a plus with arms of 1-2 around a centre inside the image
        arm = rng.integers(1, 3)
        r, c = rng.integers(arm, SIZE - arm, size=2)
        m[r - arm:r + arm + 1, c] = True
        m[r, c - arm:c + arm + 1] = True
        return m
    length = rng.integers(3, 8)   # a diagonal, falling or rising
    r, c = rng.integers(0, SIZE - length + 1, size=2)
    idx = np.arange(length)
    m[r + idx, c + idx] = True
    return m[:, ::-1].copy() if rng.integers(0, 2) else m


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images [n, 1, SIZE, SIZE] (uint8, shapes at brightness 128-255) and their labels,
    the classes in turn so each has the same share."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = np.zeros((n, 1, SIZE, SIZE), dtype=np.uint8)
    for i, kind in enumerate(labels):
        images[i, 0][_shape(int(kind), rng)] = rng.integers(128, 256)
    return images, labels


def path(split: str) -> Path:
    """The ``.npy`` of a split's images, written on first use (labels beside it)."""
    out = ROOT / f"{split}.npy"
    if not out.is_file():
        ROOT.mkdir(parents=True, exist_ok=True)
        x, y = generate(COUNTS[split], SEEDS[split])
        np.save(ROOT / f"{split}-labels.npy", y)
        np.save(out, x)
    return out


def labelled(split: str):
    """Images of a split in rectflow's model space ([-1, 1], float32 tensors) and labels."""
    import torch
    x = np.load(path(split), allow_pickle=False)
    y = np.load(ROOT / f"{split}-labels.npy", allow_pickle=False)
    return (torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0),
            torch.from_numpy(y.astype(np.int64)))
