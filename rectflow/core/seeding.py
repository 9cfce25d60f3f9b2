"""Every random draw in rectflow comes from a generator made here, from integers only.

:func:`blocks` is the one index-addressed draw: noise, source points and class labels of pair
``i`` all come from the generator of ``(seed, tag, i // BLOCK)``.

``generator(seed, "noise", block)`` is the same stream on every machine, process and batch
size, which is what makes stored pairs byte-identical and resumed runs exact.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(seed: int, *keys: int | str) -> int:
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(seed: int, *keys: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def noise(n: int, shape: tuple[int, ...], seed: int, tag: str = "eval-noise") -> torch.Tensor:
    return torch.randn((n, *shape), generator=generator(seed, tag))


BLOCK = 1024   # noise block: indices [b*BLOCK, (b+1)*BLOCK) share one generator


def blocks(start: int, stop: int, seed: int, tag: str, draw, size: int = BLOCK):
    """Rows [start, stop) of an index-addressed stream: block ``b`` (indices
    [b*size, (b+1)*size)) is ``draw(size, generator(seed, tag, b))``, so any row is the same
    whatever range, batch or process asks for it."""
    parts = []
    for b in range(start // size, (stop - 1) // size + 1):
        z = draw(size, generator(seed, tag, b))
        parts.append(z[max(start, b * size) - b * size:min(stop, (b + 1) * size) - b * size])
    return torch.cat(parts)


def block_noise(start: int, stop: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """N(0, I) noise of indices [start, stop)."""
    return blocks(start, stop, seed, "noise",
                  lambda n, g: torch.randn((n, *shape), generator=g))
