"""Evaluating a velocity model: sample quality at several NFEs and the geometry of its paths.

Everything is drawn from generators seeded by ``seed``, so two models evaluated with the same
arguments see the same noise and the same reference data: that is what makes the rounds of a
reflow run comparable number for number.

One entry point, :func:`evaluate_checkpoint`, and one record, :class:`EvalReport`
(``eval.json``): quality at each step count (with the NFE each took), optionally an adaptive
dopri5 reference, path metrics with their OT reference, and for images a Fréchet distance on
the features of a small network (the dataset's classifier, or one trained on the user's own
images: :mod:`.own_features`) and, given local Inception weights, the standard FID.
Training stages run the same evaluation on a bounded budget (:func:`evaluate_stage`).
"""
from __future__ import annotations

from ..core.metrics import path_metrics
from ..records.card import describe_lineage
import math
import time
from pathlib import Path
from typing import Callable

import torch

from ..records.checkpoint import Checkpoint
from ..data import Dataset, load_dataset
from ..errors import UserError
from ..progress import plural
from ..core.metrics import MMD_BANDWIDTHS, mmd, w2, w2_points_needed
from ..options import OUTPUT_ROOT, EvalConfig
from ..records import EvalReport
from ..io.files import sha256_file
from ..core.seeding import generator
from .conditional import ACCURACY_NOTE, ConditionalEval
from ..core.solvers import solve
from ..data.sources import data_ot, initial_points

METRIC_NOTES = {
    "w2": "exact 2-Wasserstein distance between m samples and m held-out data points: the "
          "optimal one-to-one assignment under squared Euclidean cost, square-rooted "
          "(0 for identical sets; in pixel space for images, on a subsample)",
    "mmd": "maximum mean discrepancy (biased, square-rooted) with the kernel "
           "sum over s in {%s} of exp(-|x-y|^2 / (2 s^2 D)), D the data dimension"
           % ", ".join(str(s) for s in MMD_BANDWIDTHS),
    "fd": "Fréchet distance between Gaussians fitted to the penultimate-layer features of a "
          "small network trained once per dataset (the FID recipe with a smaller network): "
          "the dataset's classifier for digits, MNIST and CIFAR-10; for other images one "
          "trained on their training split to tell clean images from blurred, noised and "
          "faded ones (and their classes, when they have any)",
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
    "accuracy": ACCURACY_NOTE,
}


def reference_data(dataset: Dataset, n: int, seed: int) -> torch.Tensor:
    """Held-out data to compare samples with: fresh draws for infinite targets, else up to
    ``n`` points of the test split in a seeded order."""
    g = generator(seed, "eval-reference")
    if not dataset.finite:
        return dataset.sample(n, g)
    idx = torch.randperm(len(dataset), generator=g)[:n]
    return dataset.take(idx)


def quality(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    m = min(samples.shape[0], reference.shape[0])
    return {"w2": w2(samples[:m], reference[:m]), "mmd": mmd(samples[:m], reference[:m])}


# ------------------------------------------------------------------------- full evaluation
def default_features_dir(ckpt_dir: str | Path) -> Path:
    """Where the FD feature networks are cached: ``<checkpoints root>/.features``, the root
    being the nearest enclosing folder named ``checkpoints``, else the checkpoint's parent
    (for a run folder, the run itself)."""
    path = Path(ckpt_dir).resolve()
    for p in path.parents:
        if p.name == OUTPUT_ROOT:
            return p / ".features"
    return path.parent / ".features"


class Scorer:
    """Sample quality against one fixed reference set; the reference's statistics are computed
    once, so every NFE and every checkpoint is scored against the same numbers."""

    def __init__(self, spec: dict, dataset: Dataset, reference: torch.Tensor, cfg: EvalConfig,
                 features_dir: Path, callback: Callable[[dict], None] | None = None):
        self.reference, self.cfg = reference, cfg
        self.is_image = bool(dataset.is_image)
        names = self.metric_names(dataset, cfg, int(reference.shape[0]))
        self.info: dict = {"n_reference": int(reference.shape[0]),
                           "metrics": {k: METRIC_NOTES[k] for k in names}}
        self.extractors: dict = {}
        if self.is_image:
            from . import features
            from .own_features import feature_net
            self.info["w2_subsample"] = min(cfg.image_w2_subsample, cfg.n, reference.shape[0])
            if "fd" in names:
                net, finfo = feature_net(spec, features_dir, callback)
                self.extractors["fd"] = features.Extractor(net.features)
                self.info["classifier"] = finfo
            if "fid" in names:
                self.extractors["fid"] = features.Extractor(features.inception(cfg.fid_weights))
                self.info["fid_weights_sha256"] = sha256_file(cfg.fid_weights)
            self.ref_stats = {k: e.stats(reference) for k, e in self.extractors.items()}

    def with_reference(self, reference: torch.Tensor) -> "Scorer":
        """The same scorer, feature networks included (not looked up again: a user's folder
        would be read and hashed again), against another reference set."""
        import copy
        other = copy.copy(self)
        other.reference = reference
        other.info = {**self.info, "n_reference": int(reference.shape[0])}
        if self.is_image:
            other.info["w2_subsample"] = min(self.cfg.image_w2_subsample, self.cfg.n,
                                             reference.shape[0])
            other.ref_stats = {k: e.stats(reference) for k, e in self.extractors.items()}
        return other

    @staticmethod
    def metric_names(dataset: Dataset, cfg: EvalConfig, n_reference: int) -> list[str]:
        """W2 and MMD for points; W2, FD (and FID) for images, the Fréchet distances only
        from two held-out images up (a covariance needs two points)."""
        if not dataset.is_image:
            return ["w2", "mmd"]
        if n_reference < 2:
            return ["w2"]
        return ["w2", "fd"] + (["fid"] if cfg.fid_weights else [])

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

    def w2_points(self, k: int) -> int:
        """How many points W2 compares for ``k`` samples."""
        m = min(k, self.reference.shape[0])
        return min(m, self.info["w2_subsample"]) if self.is_image else m

    def key(self) -> dict:
        """What besides the config decides the numbers: the classifier and Inception weights."""
        c = self.info.get("classifier") or {}
        return {"classifier_sha256": c.get("sha256"),
                "fid_weights_sha256": self.info.get("fid_weights_sha256")}


def _weights(ck: Checkpoint, use_ema: bool) -> Path:
    return ck.weights_path(use_ema)


def evaluate_checkpoint(ckpt_dir: str | Path, config: EvalConfig | None = None, *,
                        out: str | Path | None = None, features_dir: str | Path | None = None,
                        reuse: bool = True, callback: Callable[[dict], None] | None = None,
                        device: str | torch.device = "cpu",
                        model: torch.nn.Module | None = None, overwrite: bool = False,
                        own: bool = False) -> EvalReport:
    """Evaluate one checkpoint and return its :class:`EvalReport`, written to ``out`` (a
    ``.json`` file, or a folder to hold ``eval.json``) when given. A report already at ``out``
    (or the model folder's own ``eval.json``) made from the same arguments and the same weights
    (sha256) is returned as it is, with ``cached`` set."""
    cfg = config or EvalConfig()
    cfg.validate()
    if cfg.fid_weights is not None and not Path(cfg.fid_weights).is_file():
        raise UserError(f"fid_weights {cfg.fid_weights} does not exist")
    ck = Checkpoint(ckpt_dir)
    from ..io import check_fits
    check_fits(6 * cfg.n * math.prod(ck.shape) * 4, f"evaluating n={cfg.n}")
    target, inside = None, False
    if out is not None:
        target = Path(out)
        if target.suffix != ".json" and not target.is_file():
            target = target / EvalReport.FILENAME
        if target.is_dir():
            raise UserError(f"output {target} is a folder")
        if target.is_symlink():
            raise UserError(f"output {target} is a link; name a file")
        inside = _same_file(target, ck.path / EvalReport.FILENAME)
        if inside and not own:   # the model's own eval.json: refreshed, in rectflow's folder
            check_own_report(ck.path)
        elif not own:   # never the model folder, nor inside it or anything it names
            from ..data.inputs import refuse_inputs
            refuse_inputs(target, [ck.path])
    emit = callback or (lambda e: None)
    if not own and ck.card.unfinished(ck.path):   # a stopped run's model: say so, once
        emit({"event": "note", "text": ck.card.unfinished(ck.path)})
    dataset = load_dataset(ck.card.data, "test")
    if tuple(dataset.shape) != ck.shape:
        raise UserError(f"{ck.path}: the model is for shape {list(ck.shape)} but its data now "
                        f"has shape {list(dataset.shape)}")
    fdir = Path(features_dir) if features_dir is not None else default_features_dir(ck.path)
    ref = reference_data(dataset, cfg.n, cfg.seed)
    scorer = Scorer(ck.card.data, dataset, ref, cfg, fdir, callback)
    weights_sha = sha256_file(_weights(ck, cfg.use_ema))
    args = {**cfg.to_json(), "data": ck.card.data, **scorer.key()}
    if reuse:
        for cand in (target, ck.path / EvalReport.FILENAME):
            old = _cached(cand, args, weights_sha)
            if old is not None:
                old.cached, old.file = True, str(cand)
                return old
    if target is not None and (target.exists() or target.is_symlink()) and not inside:
        if not overwrite:
            raise UserError(f"{target} already exists (not a report of these arguments and "
                            "weights); pass overwrite to replace it")
        if not own:   # overwrite replaces only a report rectflow wrote, never a user's file
            from ..io.stage import check_files
            check_files([target], (), overwrite=True)

    started = time.perf_counter()
    cond = ConditionalEval(ck, cfg, fdir, device, model)   # labels and guidance
    net, extras = cond.velocity(cfg.seed, cfg.n)
    distilled = ck.card.stage == "distill"
    own_steps = int(ck.card.sample["steps"])
    adaptive = cfg.adaptive and not distilled   # a k-step student has no ODE to refine
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    total = cfg.seeds * (len(cfg.steps) + 1) + int(adaptive) + 1
    emit({"event": "start", "total": total, "label": f"evaluating {ck.path.name}"})
    done = 0
    runs: list[dict] = []
    floors: list[dict] = []
    for s in seeds:
        sc = scorer if s == cfg.seed else scorer.with_reference(
            reference_data(dataset, cfg.n, s))
        x0 = initial_points(ck.card, cfg.n, s, "eval-noise").to(device)
        run, (v, ex) = {}, cond.velocity(s, cfg.n)
        for k in cfg.steps:
            sol = solve(v, x0, method=cfg.solver, steps=k, extras=ex)
            run[str(k)] = {"steps": k, "nfe": sol.nfe, **sc(sol.x), **cond.scores(sol.x, s)}
            done += 1
            emit({"event": "progress", "done": done,
                  "info": f"seed {s}: {cfg.solver} {plural(k, 'step')}"})
        runs.append(run)
        draw = floor_draw(ck.card.data, dataset, cfg.n, s)
        floors.append({**sc(draw), "w2_points": sc.w2_points(draw.shape[0])})
        done += 1
        emit({"event": "progress", "done": done, "info": f"seed {s}: noise floor"})
    q = {k: _summarise([r[k] for r in runs]) for k in runs[0]}
    x0 = initial_points(ck.card, cfg.n, cfg.seed, "eval-noise").to(device)
    reference = None
    if adaptive:
        sol = solve(net, x0, method="dopri5", rtol=cfg.reference_rtol, atol=cfg.reference_atol,
                    extras=extras)
        reference = {"solver": "dopri5", "rtol": cfg.reference_rtol, "atol": cfg.reference_atol,
                     "nfe": sol.nfe, "nfe_max": getattr(sol, "nfe_max", sol.nfe), **scorer(sol.x)}
        done += 1
        emit({"event": "progress", "done": done, "info": "dopri5 reference"})
    # a distilled student's path is its own k-step Euler path, not a fine grid
    grid = own_steps if distilled else cfg.path_steps
    path = path_metrics(net, x0, "euler", grid, cfg.ot_subsample, extras=extras)
    path["grid"] = "the student's own steps" if distilled else "fine Euler grid"
    path.update(data_ot(ck.card, x0, cfg.seed, cfg.ot_subsample))
    emit({"event": "progress", "done": total, "info": "path metrics"})
    report = EvalReport(
        checkpoint=str(ck.path), stage=ck.card.stage, round=ck.card.round, args=args,
        weights_sha256=weights_sha, n=cfg.n, n_reference=int(ref.shape[0]), seed=cfg.seed,
        solver=cfg.solver, metrics=scorer.info["metrics"], quality=q, path=path,
        reference=reference, image=scorer.is_image, classifier=scorer.info.get("classifier"),
        floors=_floors(floors, math.prod(ck.shape)), seeds=seeds, lineage=describe_lineage(ck.card),
        conditional=cond.report(x0, scorer, q, path, grid),
        seconds=time.perf_counter() - started)
    if inside and not own:   # not while a stage resumes into the folder
        from ..io import FolderLock
        with FolderLock(ck.path):
            check_own_report(ck.path)
            report.write(target)
    elif target is not None:
        report.write(target)
    report.file = None if target is None else str(target)
    return report


def _same_file(a: Path, b: Path) -> bool:
    import os
    return os.path.abspath(a) == os.path.abspath(b) or \
        Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()


def check_own_report(folder: Path) -> None:
    """A model folder's own ``eval.json`` may be written (refreshed) by an evaluation only in
    a model folder rectflow made, and only over a report rectflow recorded writing there."""
    from ..io import is_owned
    from ..io.remove import foreign_entries
    if not is_owned(folder, "model"):
        raise UserError(f"{folder} is not a model folder made by rectflow (no .rectflow "
                        "marker); write the report elsewhere (--out FILE)")
    if EvalReport.FILENAME in foreign_entries(folder):
        raise UserError(f"{folder / EvalReport.FILENAME} was not written by rectflow; move it "
                        "away or write the report elsewhere (--out FILE)")


def floor_draw(spec: dict, heldout: Dataset, n: int, seed: int) -> torch.Tensor:
    """A second draw from the data, independent of the held-out reference, of the same size:
    fresh draws for infinite targets, else the training split (for FD: held-out vs training
    data). Its distance to the reference is the metric's noise floor at this n."""
    if not heldout.finite:
        return heldout.sample(n, generator(seed, "eval-floor"))
    train = load_dataset(spec, "train")
    idx = torch.randperm(len(train), generator=generator(seed, "eval-floor"))[:n]
    return train.take(idx)


def _floors(draws: list[dict], dim: int) -> dict:
    """The floors over seeds, with the fewest points a W2 floor came from and how many it
    needs (:func:`~rectflow.core.metrics.w2_points_needed`)."""
    points = min(d.pop("w2_points") for d in draws)
    return {**_summarise(draws), "w2_points": points, "w2_points_needed": w2_points_needed(dim)}


def _summarise(runs: list[dict]) -> dict:
    """Per key: the mean over seeds, and ``<key>_std`` (0 for one seed); counts stay as they
    are."""
    out: dict = {}
    for key, v in runs[0].items():
        if key in ("steps",) or not isinstance(v, (int, float)):
            out[key] = v
            continue
        vals = torch.tensor([float(r[key]) for r in runs], dtype=torch.float64)
        out[key] = float(vals.mean())
        if key != "nfe":
            out[f"{key}_std"] = float(vals.std()) if len(runs) > 1 else 0.0
    return out


def _cached(path: Path | None, args: dict, weights_sha: str) -> EvalReport | None:
    if path is None or not path.is_file():
        return None
    try:
        old = EvalReport.read(path)
    except UserError:
        return None
    return old if old.matches(args, weights_sha) else None


def stage_defaults(card) -> EvalConfig:
    """The bounded evaluation a training stage runs when it finishes: Euler at 1, 2, 4, 8 and
    the model's own step count, one seed, no adaptive reference (``rectflow eval`` adds it).
    Images use the image recipe's smaller budget (``KIND_DEFAULTS["image"]["stage_eval"]``)
    and skip a many-step solve, which is what made image evaluation slow."""
    from ..options import kind_defaults
    image = len(card.shape) == 3
    own = int(card.sample["steps"])
    base = {"steps": (1, 2, 4, 8), "n": 2000, "path_steps": 100}
    base.update(kind_defaults("image" if image else "vector", "stage_eval"))
    steps = set(base.pop("steps")) | ({own} if own <= 8 or not image else set())
    return EvalConfig(steps=tuple(sorted(steps)), adaptive=False, seeds=1, **base)


def evaluate_stage(out: Path, n: int | None = None, device="cpu", callback=None,
                 model: torch.nn.Module | None = None) -> EvalReport:
    """Evaluate a finished model folder and store its ``eval.json`` (its own output)."""
    ck = Checkpoint(out)
    cfg = stage_defaults(ck.card)
    if n is not None:
        cfg = cfg.replace(n=n)
    return evaluate_checkpoint(out, cfg, out=out / EvalReport.FILENAME, callback=callback,
                               device=device, reuse=False, model=model, overwrite=True,
                               own=True)
