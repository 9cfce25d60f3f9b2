"""Toy 2-D targets drawn on the fly, each from a single torch generator.

Definitions (the common ones from FFJORD / TorchCFM, fixed here so every method is compared on
the same distribution):

* ``moons``: the distribution of scikit-learn's ``make_moons(noise=0.05)`` (two half circles,
  the angle drawn uniformly instead of on sklearn's even grid), standardised to zero mean and
  unit variance per axis with the exact population constants.
* ``8gaussians``: eight Gaussians with std 0.5, centred on a circle of radius 4 at angles k·π/4.
* ``checkerboard``: uniform on the 8 dark cells of the 4x4 board on [-4, 4]^2 (cell side 2; a
  cell is dark when the sum of its row and column index is even).
* ``spirals``: two interleaved spirals (FFJORD's ``2spirals``), about [-4, 4]^2, noise 0.1.
* ``circles``: scikit-learn's ``make_circles(factor=0.5, noise=0.08)`` distribution scaled by 3.
"""
from __future__ import annotations

import math

import torch

from .base import Dataset, Normalization

# population moments of make_moons' noiseless curves with uniform angle, plus noise variance
_MOONS_NOISE = 0.05
_MOONS_MEAN = (0.5, 0.25)
_MOONS_STD = (math.sqrt(0.75 + _MOONS_NOISE**2),
              math.sqrt(0.625 - 1 / math.pi - 0.0625 + _MOONS_NOISE**2))


def _moons(n: int, g: torch.Generator) -> torch.Tensor:
    theta = torch.rand(n, generator=g) * math.pi
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, torch.cos(theta), 1 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    pts = torch.stack([x, y], 1) + _MOONS_NOISE * torch.randn(n, 2, generator=g)
    return (pts - torch.tensor(_MOONS_MEAN)) / torch.tensor(_MOONS_STD)


def _eight_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    k = torch.randint(8, (n,), generator=g).float() * (math.pi / 4)
    centres = 4.0 * torch.stack([torch.cos(k), torch.sin(k)], 1)
    return centres + 0.5 * torch.randn(n, 2, generator=g)


def _checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    cells = torch.tensor([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0],
                         dtype=torch.float32)
    pick = cells[torch.randint(len(cells), (n,), generator=g)]
    return -4.0 + 2.0 * (pick + torch.rand(n, 2, generator=g))


def _spirals(n: int, g: torch.Generator) -> torch.Tensor:
    r = torch.sqrt(torch.rand(n, generator=g)) * 540 * (2 * math.pi) / 360
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    pts = torch.stack([-torch.cos(r) * r, torch.sin(r) * r], 1) * sign[:, None] / 3
    return pts + 0.1 * torch.randn(n, 2, generator=g)


def _circles(n: int, g: torch.Generator) -> torch.Tensor:
    theta = torch.rand(n, generator=g) * 2 * math.pi
    radius = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, 0.5)
    pts = radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    return 3.0 * (pts + 0.08 * torch.randn(n, 2, generator=g))


TOY = {"moons": _moons, "8gaussians": _eight_gaussians, "checkerboard": _checkerboard,
       "spirals": _spirals, "circles": _circles}


class ToyDataset(Dataset):
    """An infinite 2-D target; every draw uses only the generator it is given."""

    shape = (2,)
    finite = False
    is_image = False

    def __init__(self, name: str):
        self.name = name
        self._fn = TOY[name]
        self.normalization = Normalization()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._fn(n, generator)
