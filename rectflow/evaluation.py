"""Evaluating a velocity model: sample quality at several NFEs and the geometry of its paths.

Everything is drawn from generators seeded by ``seed``, so two models evaluated with the same
arguments see the same noise and the same reference data.
"""
from __future__ import annotations

import math

import torch

from .data import Dataset
from .metrics import PathStats, mmd, ot_cost, w2
from .seeding import generator
from .solvers import solve


def noise(n: int, shape: tuple[int, ...], seed: int, tag: str = "eval-noise") -> torch.Tensor:
    return torch.randn((n, *shape), generator=generator(seed, tag))


def reference_data(dataset: Dataset, n: int, seed: int) -> torch.Tensor:
    """Held-out data to compare samples with: fresh draws for infinite targets, else up to
    ``n`` points of the test split in a seeded order."""
    g = generator(seed, "eval-reference")
    if not dataset.finite:
        return dataset.sample(n, g)
    idx = torch.randperm(len(dataset), generator=g)[:n]
    return dataset.take(idx)


def path_metrics(velocity, x0: torch.Tensor, solver: str = "euler", steps: int = 100,
                 ot_subsample: int = 2000, **solver_kw) -> dict:
    """Straightness, curvature and transport cost of the flow from ``x0``, with the exact OT
    cost of the same endpoints on the first ``ot_subsample`` points."""
    stats = PathStats(math.prod(x0.shape[1:]))
    sol = solve(velocity, x0, method=solver, steps=steps, observer=stats.observer, **solver_kw)
    stats.finish(x0, sol.x)
    out = stats.result()
    m = min(ot_subsample, x0.shape[0])
    out["ot_cost"] = ot_cost(x0[:m], sol.x[:m])
    out["ot_subsample"] = m
    out["solver"], out["steps"], out["nfe"] = solver, steps, sol.nfe
    return out


def quality(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    m = min(samples.shape[0], reference.shape[0])
    return {"w2": w2(samples[:m], reference[:m]), "mmd": mmd(samples[:m], reference[:m])}


def evaluate_model(model: torch.nn.Module, dataset: Dataset, nfes=(1, 2, 4, 8), n: int = 2000,
                   seed: int = 0, solver: str = "euler", path_steps: int = 100,
                   device: str | torch.device = "cpu") -> dict:
    """W2/MMD of samples at each NFE against held-out data, and path metrics on a fine grid."""
    model = model.to(device).eval()
    x0 = noise(n, dataset.shape, seed).to(device)
    ref = reference_data(dataset, n, seed)
    result = {"n": n, "seed": seed, "solver": solver, "quality": {}}
    for k in nfes:
        sol = solve(model, x0, method=solver, steps=k)
        result["quality"][str(k)] = {"nfe": sol.nfe, **quality(sol.x.cpu(), ref)}
    result["path"] = path_metrics(model, x0, "euler", path_steps)
    return result
