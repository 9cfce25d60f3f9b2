"""Evaluating a conditional model: class accuracy beside FD/W2, every guidance weight, and
path metrics per class.

Evaluation samples are labelled by draws from the training class frequencies (generator
``(seed, "eval-labels")``), so their mix of classes is the held-out data's and FD/W2 stay
comparable with an unconditional model's. **Class accuracy** is the share of samples that a
classifier assigns to the label they were generated for: the feature classifier of
:mod:`rectflow.analysis.features` (digits, MNIST, CIFAR-10; trained once on the training split and
cached as safetensors), or for ``8gaussians`` the nearest mixture component. Other data has
no accuracy.

The report's ``conditional`` entry holds, per guidance weight ``w``: the quality at each step
count (with ``accuracy``) and the path metrics overall and per class. The lead weight (1 when
asked for, else the first) is the one the report's main figures use, averaged over the
evaluation seeds; other weights are measured on the first seed. A distilled student has its
pairs' guidance baked in and is evaluated at its own labels only (``w = 1``).
"""
from __future__ import annotations

import math

import torch

from ..core.guidance import Guided, guidances, lead_guidance
from ..data.labels import prior
from ..core.metrics import PathStats
from ..core.seeding import generator

ACCURACY_NOTE = ("share of samples the dataset's classifier assigns to the label they were "
                 "generated for (8gaussians: the nearest component)")


def classifier_of(spec: dict, features_dir, callback=None):
    """A function images/points -> predicted class, or None when there is none."""
    name = spec.get("name")
    if name == "8gaussians":
        def nearest(x: torch.Tensor) -> torch.Tensor:
            angle = torch.atan2(x[:, 1], x[:, 0])
            return torch.round(angle / (math.pi / 4)).long() % 8
        return nearest
    from .features import FEATURE_SETS, classifier
    if name not in FEATURE_SETS:
        return None
    net, _ = classifier(spec, features_dir, callback)

    def predict(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().cpu().clamp(-1, 1)
        with torch.inference_mode():
            return torch.cat([net(x[i:i + 1024]).argmax(1) for i in range(0, len(x), 1024)])
    return predict


def per_class_paths(velocity, x0: torch.Tensor, y: torch.Tensor, steps: int,
                    classes: list[str]) -> dict:
    """Straightness, curvature and transport cost of each class's paths on one Euler solve."""
    from ..core.solvers import solve
    dim = math.prod(x0.shape[1:])
    masks = {int(c): y == c for c in torch.unique(y)}
    stats = {c: PathStats(dim) for c in masks}

    def observer(t, dt, z, v):
        for c, m in masks.items():
            stats[c].observer(t, dt, z[m], v[m])
    sol = solve(velocity, x0, method="euler", steps=steps, observer=observer, extras={"y": y})
    out = {}
    for c, m in masks.items():
        stats[c].finish(x0[m], sol.x[m])
        r = stats[c].result()
        out[classes[c]] = {k: r[k] for k in ("n", "straightness", "curvature",
                                             "transport_cost")}
    return out


class ConditionalEval:
    """The velocities and extra scores :func:`rectflow.analysis.evaluate.evaluate_checkpoint` uses;
    for an unconditional model a thin wrapper around its plain velocity."""

    def __init__(self, ck, cfg, features_dir, device="cpu", model=None, callback=None):
        self.card, self.cfg, self.device = ck.card, cfg, device
        self.on = bool(ck.card.conditional)
        if not self.on:
            self.net = ck.velocity(ema=cfg.use_ema, device=device, module=model)
            return
        self.model = ck.load_model(cfg.use_ema, device, model)
        self.objective = ck.objective()
        self.distilled = ck.card.stage == "distill"
        self.ws = [1.0] if self.distilled else guidances(cfg.guidance)
        self.lead = lead_guidance(self.ws)
        self.prior = prior(ck.card.data)
        self.predict = classifier_of(ck.card.data, features_dir, callback)

    def labels(self, seed: int, n: int) -> torch.Tensor:
        return torch.multinomial(self.prior, n, replacement=True,
                                 generator=generator(seed, "eval-labels"))

    def velocity(self, seed: int, n: int, w: float | None = None) -> tuple:
        """The velocity to solve and its extras (the ``n`` labels of ``seed``)."""
        if not self.on:
            return self.net, {}
        guide = Guided(self.objective, self.model, len(self.card.classes),
                       self.lead if w is None else w)
        return guide, {"y": self.labels(seed, n)}

    def scores(self, x: torch.Tensor, seed: int) -> dict:
        if not self.on or self.predict is None:
            return {}
        y = self.labels(seed, x.shape[0])
        return {"accuracy": float((self.predict(x) == y).float().mean())}

    def report(self, x0: torch.Tensor, scorer, quality: dict, path: dict, grid: int) -> dict | None:
        """The ``conditional`` entry of the report (None for an unconditional model)."""
        if not self.on:
            return None
        from ..core.metrics import path_metrics
        from ..core.solvers import solve
        cfg, seed = self.cfg, self.cfg.seed
        m = min(cfg.ot_subsample, x0.shape[0])
        out = {"classes": list(self.card.classes), "lead": self.lead,
               "labels": "drawn from the training class frequencies",
               "accuracy": ACCURACY_NOTE if self.predict is not None else None,
               "baked_guidance": (self.card.parent or {}).get("guidance")
               if self.distilled else None, "guidance": {}}
        for w in self.ws:
            v, ex = self.velocity(seed, x0.shape[0], w)
            if w == self.lead:
                q, p = quality, {k: path[k] for k in ("straightness", "straightness_per_dim",
                                                      "curvature", "transport_cost", "ot_cost")}
            else:
                q = {}
                for k in cfg.steps:
                    sol = solve(v, x0, method=cfg.solver, steps=k, extras=ex)
                    q[str(k)] = {"steps": k, "nfe": sol.nfe, **scorer(sol.x),
                                 **self.scores(sol.x, seed)}
                full = path_metrics(v, x0, "euler", grid, cfg.ot_subsample, extras=ex)
                p = {k: full[k] for k in ("straightness", "straightness_per_dim", "curvature",
                                          "transport_cost", "ot_cost")}
            p["per_class"] = per_class_paths(v, x0[:m], self.labels(seed, x0.shape[0])[:m],
                                             grid, self.card.classes)
            out["guidance"][f"{w:g}"] = {"quality": q, "path": p}
        return out
