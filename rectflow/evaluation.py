"""Evaluating a velocity model: sample quality at several NFEs and the geometry of its paths.

Everything is drawn from generators seeded by ``seed``, so two models evaluated with the same
arguments see the same noise and the same reference data: that is what makes the rounds of a
reflow run comparable number for number.

Two entry points:

* :func:`evaluate_model` — the quick look that every training stage stores as ``metrics.json``;
* :func:`evaluate_checkpoint` — the full evaluation behind ``rectflow eval`` and ``compare``:
  quality at each NFE plus an adaptive dopri5 reference, path metrics with their OT reference,
  and for images a Fréchet distance on the features of a small classifier (and, given local
  Inception weights, the standard FID). It is stored as ``eval.json`` with the arguments that
  produced it, and reused when asked again with the same arguments and weights.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint as ckpt
from .data import Dataset, load_dataset
from .errors import UserError
from .metrics import MMD_BANDWIDTHS, PathStats, mmd, ot_cost, w2
from .seeding import generator
from .solvers import FIXED, solve

EVAL_FORMAT = "rectflow/eval"
EVAL_VERSION = 1

METRIC_NOTES = {
    "w2": "exact 2-Wasserstein distance between m samples and m held-out data points: the "
          "optimal one-to-one assignment under squared Euclidean cost, square-rooted "
          "(0 for identical sets; in pixel space for images, on a subsample)",
    "mmd": "maximum mean discrepancy (biased, square-rooted) with the kernel "
           "sum over s in {%s} of exp(-|x-y|^2 / (2 s^2 D)), D the data dimension"
           % ", ".join(str(s) for s in MMD_BANDWIDTHS),
    "fd": "Fréchet distance between Gaussians fitted to the penultimate-layer features of a "
          "small classifier trained once per dataset (the FID recipe with a smaller network)",
    "fid": "Fréchet distance on the 2048 pool features of Inception-v3 loaded from "
           "--fid-weights (the standard FID when those are the usual FID weights)",
    "straightness": "sum over steps of dt * mean |(z1 - z0) - v(z_t, t)|^2 on a fine Euler "
                    "grid; 0 when every path is a straight line at constant speed",
    "straightness_per_dim": "straightness divided by the data dimension",
    "curvature": "spread along each path of the endpoint the flow predicts, "
                 "z_t + (1 - t) v(z_t, t); 0 for straight paths",
    "transport_cost": "mean |z1 - z0|^2 between each noise point and where the flow takes it",
    "ot_cost": "the same cost for the optimal assignment of the same endpoints (exact, on a "
               "subsample); transport_cost - ot_cost is how far the coupling is from optimal",
}


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


# ------------------------------------------------------------------------- full evaluation
@dataclass
class EvalConfig:
    """What ``rectflow eval`` / ``compare`` measure. Every field is part of the cache key."""

    nfes: tuple[int, ...] = (1, 2, 4, 8, 16)
    solver: str = "euler"
    n: int = 2000
    seed: int = 0
    path_steps: int = 100
    reference_rtol: float = 1e-5
    reference_atol: float = 1e-5
    ot_subsample: int = 2000
    image_w2_subsample: int = 500
    use_ema: bool = True
    fid_weights: str | None = None

    def validate(self) -> None:
        self.nfes = tuple(sorted({int(k) for k in self.nfes}))
        if not self.nfes or self.nfes[0] < 1:
            raise UserError("--nfe needs one or more step counts >= 1, e.g. 1,2,4,8")
        if self.solver not in FIXED:
            raise UserError(f"--solver must be a fixed-step solver ({', '.join(FIXED)}); the "
                            "adaptive dopri5 reference is always added")
        for name in ("n", "path_steps", "ot_subsample", "image_w2_subsample"):
            if getattr(self, name) < (2 if name == "n" else 1):
                raise UserError(f"--{name.replace('_', '-')} is too small: {getattr(self, name)}")
        if not (self.reference_rtol > 0 and self.reference_atol > 0):
            raise UserError("the dopri5 reference tolerances must be > 0")
        if self.fid_weights is not None:
            p = Path(self.fid_weights)
            if not p.is_file():
                raise UserError(f"--fid-weights {p} does not exist")
            self.fid_weights = str(p.resolve())

    def to_json(self) -> dict:
        d = asdict(self)
        d["nfes"] = list(self.nfes)
        return d


def default_features_dir(ckpt_dir: str | Path) -> Path:
    """Where the feature classifiers are cached: ``<checkpoints root>/.features``, the root
    being the nearest enclosing folder named ``checkpoints``, else the checkpoint's parent
    (for a run folder, the run itself)."""
    path = Path(ckpt_dir).resolve()
    for p in path.parents:
        if p.name == "checkpoints":
            return p / ".features"
    return path.parent / ".features"


class Scorer:
    """Sample quality against one fixed reference set; the reference's statistics are computed
    once, so every NFE and every checkpoint is scored against the same numbers."""

    def __init__(self, spec: dict, dataset: Dataset, reference: torch.Tensor, cfg: EvalConfig,
                 features_dir: Path, callback: Callable[[dict], None] | None = None):
        self.reference, self.cfg = reference, cfg
        self.is_image = bool(dataset.is_image)
        self.info: dict = {"n_reference": int(reference.shape[0]),
                           "metrics": {k: METRIC_NOTES[k] for k in self.metric_names(dataset, cfg)}}
        self.extractors: dict = {}
        if self.is_image:
            from . import features
            self.info["w2_subsample"] = min(cfg.image_w2_subsample, cfg.n, reference.shape[0])
            net, finfo = features.classifier(spec, features_dir, callback)
            if net is not None:
                self.extractors["fd"] = features.Extractor(net.features)
            self.info["classifier"] = finfo
            if cfg.fid_weights:
                self.extractors["fid"] = features.Extractor(features.inception(cfg.fid_weights))
                self.info["fid_weights_sha256"] = ckpt.sha256_file(cfg.fid_weights)
            self.ref_stats = {k: e.stats(reference) for k, e in self.extractors.items()}

    @staticmethod
    def metric_names(dataset: Dataset, cfg: EvalConfig) -> list[str]:
        if not dataset.is_image:
            return ["w2", "mmd"]
        from .features import FEATURE_SETS
        return (["w2"] + (["fd"] if dataset.name in FEATURE_SETS else [])
                + (["fid"] if cfg.fid_weights else []))

    def __call__(self, samples: torch.Tensor) -> dict:
        samples = samples.detach().float().cpu()
        if not self.is_image:
            return quality(samples, self.reference)
        from .features import frechet_distance
        m = self.info["w2_subsample"]
        out = {"w2": w2(samples[:m], self.reference[:m])}
        for k, e in self.extractors.items():
            out[k] = frechet_distance(e.stats(samples), self.ref_stats[k])
        return out

    def key(self) -> dict:
        """What besides the config decides the numbers: the classifier and Inception weights."""
        c = self.info.get("classifier") or {}
        return {"classifier_sha256": c.get("sha256"),
                "fid_weights_sha256": self.info.get("fid_weights_sha256")}


def _cached(path: Path, args: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        old = ckpt.read_json(path)
    except UserError:
        return None
    return old if old.get("format") == EVAL_FORMAT and old.get("args") == args else None


def evaluate_checkpoint(ckpt_dir: str | Path, config: EvalConfig | None = None, *,
                        out: str | Path | None = None, features_dir: str | Path | None = None,
                        reuse: bool = True, callback: Callable[[dict], None] | None = None,
                        device: str | torch.device = "cpu") -> dict:
    """Evaluate one checkpoint; write ``eval.json`` (into the checkpoint folder unless ``out``
    names a file or folder) and return it. An existing ``eval.json`` made with the same
    arguments, weights and feature networks is returned as it is (``"cached": true``)."""
    cfg = config or EvalConfig()
    cfg.validate()
    ck = ckpt.Checkpoint(ckpt_dir)
    target = Path(out) if out is not None else ck.path / "eval.json"
    if target.suffix != ".json":
        target = target / "eval.json"
    if target.exists() and target.is_dir():
        raise UserError(f"--out {target} is a folder")
    emit = callback or (lambda e: None)
    dataset = load_dataset(ck.config["data"], "test")
    if tuple(dataset.shape) != ck.shape:
        raise UserError(f"{ck.path}: the model is for shape {list(ck.shape)} but its data now "
                        f"has shape {list(dataset.shape)}")
    fdir = Path(features_dir) if features_dir is not None else default_features_dir(ck.path)
    ref = reference_data(dataset, cfg.n, cfg.seed)
    scorer = Scorer(ck.config["data"], dataset, ref, cfg, fdir, callback)
    args = {**cfg.to_json(), "weights_sha256": ckpt.sha256_file(ck.weights_path(cfg.use_ema)),
            "data": ck.config["data"], **scorer.key(), "version": EVAL_VERSION}
    if reuse and (old := _cached(target, args)) is not None:
        return {**old, "cached": True}

    started = time.perf_counter()
    model = ck.load_model(ema=cfg.use_ema, device=device)
    x0 = noise(cfg.n, ck.shape, cfg.seed).to(device)
    emit({"event": "start", "total": len(cfg.nfes) + 2, "label": ck.path.name})
    q: dict = {}
    for i, k in enumerate(cfg.nfes):
        sol = solve(model, x0, method=cfg.solver, steps=k)
        q[str(k)] = {"steps": k, "nfe": sol.nfe, **scorer(sol.x)}
        emit({"event": "progress", "done": i + 1})
    sol = solve(model, x0, method="dopri5", rtol=cfg.reference_rtol, atol=cfg.reference_atol)
    reference = {"solver": "dopri5", "rtol": cfg.reference_rtol, "atol": cfg.reference_atol,
                 "nfe": sol.nfe, **scorer(sol.x)}
    emit({"event": "progress", "done": len(cfg.nfes) + 1})
    path = path_metrics(model, x0, "euler", cfg.path_steps, cfg.ot_subsample)
    emit({"event": "progress", "done": len(cfg.nfes) + 2})
    result = {"format": EVAL_FORMAT, "version": EVAL_VERSION, "checkpoint": str(ck.path),
              "stage": ck.config.get("stage"), "round": ck.config.get("round", 1),
              "args": args, "n": cfg.n, "seed": cfg.seed, "solver": cfg.solver,
              "image": scorer.is_image, **scorer.info, "quality": q, "reference": reference,
              "path": path, "seconds": time.perf_counter() - started}
    ckpt.atomic_write_json(target, result)
    return result


def primary_metric(result: dict) -> str:
    """The quality number a table leads with: FD for images when available, else W2."""
    return "fd" if "fd" in result.get("metrics", {}) else "w2"
