"""The stages behind every CLI command: train, couple, reflow, distill, sample.

Each stage takes configs (:mod:`rectflow.options`) and paths, writes one folder, and returns
its record: a :class:`~rectflow.records.checkpoint.Checkpoint` (its :class:`~rectflow.records.RunCard`
and weights), a :class:`~rectflow.records.PairsManifest`, or the samples. Every output folder
records its parent, so a run's lineage rf1 → pairs → rf2 → ... reads back with :func:`lineage`.
The friendlier keyword API for notebooks is :mod:`rectflow.api`.
"""
from __future__ import annotations

from ..data.labels import class_names
import math
import os
from pathlib import Path
from typing import Callable

import torch

from ..records import checkpoint as ckpt
from .. import io
from ..machine import threads
from ..machine.batchfit import choose_batch
from ..machine.steptime import fit_recipe
from ..io.stage import check_output, write_stage
from .sample import sample, sample_tensor  # noqa: F401 - part of the stages API
from ..records.checkpoint import Checkpoint
from ..training.pairs import pairs_source, train_source
from ..data import data_kind, load_dataset, spec_shape
from ..errors import CheckpointError, OptionError, UserError
from ..analysis.evaluate import evaluate_stage
from ..models import (build_model, custom_config, default_model_config, plan_model,
                      student_model)
from ..objectives import build_objective
from ..options import CoupleConfig, TrainConfig
from .couple import (check_plan, couple_teacher, label_provenance, make_plan, remove_stale_temps,
                     write_pairs)
from ..records import PairsManifest, RunCard
from ..core.seeding import derive_seed
from ..data.sources import Source, card_source, data_ot
from ..training.loop import check_run, fit
from ..machine.accelerator import make_accelerator
from .plan import (Options, StagePlan, distill_defaults, open_pairs,  # noqa: F401
                   plan_on_pairs, plan_train, reflow_defaults, teacher_of, verified_teacher)

Callback = Callable[[dict], None]


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())


def batch_bytes(rows: int, shape) -> int:
    """A coarse lower bound of the memory one training micro-batch needs: pairs, interpolant,
    prediction, target and their gradients, in float32 (the network's activations come on
    top). Enough to refuse a size that can never fit, before anything is allocated."""
    return 8 * rows * math.prod(shape) * 4


def _seeded_model(model_cfg: dict, seed: int) -> torch.nn.Module:
    """Initial weights from the run's seed alone; the global RNG is left as it was."""
    n = sum(p.numel() for p in plan_model(model_cfg).parameters())   # bounded, unallocated
    io.check_fits(20 * n, f"a model of {n:,} parameters (weights, EMA, gradients and Adam "
                  "state in float32)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(model_cfg)


def _fit_stage(out: Path, card: RunCard, model: torch.nn.Module, source, cfg: TrainConfig,
               resume: bool, overwrite: bool, callback, evaluate: bool,
               eval_n: int | None) -> Checkpoint:
    acc = make_accelerator(mixed_precision=cfg.mixed_precision,
                           gradient_accumulation_steps=cfg.grad_accum, log_with=cfg.log_with)
    check_run(cfg, acc.num_processes, source.shape)   # before overwrite clears anything
    acc.wait_for_everyone()   # every process has checked the output before any writes to it

    def run(folder: Path) -> None:
        threads.ensure(callback)   # and say so, now that the work starts
        fit(model, source, cfg, folder, card, resume=resume, callback=callback, accelerator=acc)
        if evaluate and acc.is_main_process:
            try:
                evaluate_stage(folder, n=eval_n, device=acc.device, callback=callback,
                             model=model if card.is_custom else None)
            except KeyboardInterrupt:   # the model is saved; only its report is skipped
                _note(callback)(f"evaluation interrupted: the trained model in {out} is kept "
                                "(no eval.json; evaluate it later)")
        acc.wait_for_everyone()

    write_stage(out, "model", overwrite, resume, acc, run)
    return Checkpoint(out)


# ------------------------------------------------------------------------------------ train
def _note(callback):
    """One line for the user, as a ``{"event": "note", "text": ...}`` callback event."""
    return lambda text: callback and callback({"event": "note", "text": text})


def train(out: str | Path, data: str = "moons", *, data_root: str | None = None,
          download: bool = False, resolution: int | None = None, channels: int | None = None,
          coupling: str = "independent", model: dict | torch.nn.Module | None = None,
          options: Options = None, resume: bool = False, overwrite: bool = False,
          callback: Callback | None = None, evaluate: bool = True,
          eval_n: int | None = None, file_options: dict | None = None) -> Checkpoint:
    """Train a 1-rectified flow (or, with ``coupling='ot'``, minibatch-OT flow matching).

    ``model`` is a dict of overrides of the default network (``{"hidden": 128}``) or the
    user's own ``nn.Module`` called as ``model(x, t)``. Images are read at their own
    ``resolution`` and ``channels`` unless those are given; options not given come from the
    defaults for the kind of data (:data:`~rectflow.options.KIND_DEFAULTS`), with a default
    batch cut to what fits in memory. Plans (:func:`~rectflow.stages.plan.plan_train`), then
    runs the plan (:func:`run_train`)."""
    plan = plan_train(out, data, data_root=data_root, download=download,
                      resolution=resolution, channels=channels, coupling=coupling, model=model,
                      options=options, resume=resume, overwrite=overwrite,
                      file_options=file_options, note=_note(callback))
    return run_train(plan, callback=callback, evaluate=evaluate, eval_n=eval_n)


def run_train(plan: StagePlan, *, callback: Callback | None = None, evaluate: bool = True,
              eval_n: int | None = None) -> Checkpoint:
    """Run a ``train`` plan."""
    own = plan.model if isinstance(plan.model, torch.nn.Module) else None
    cfg, out, d = plan.config, plan.out, plan.data
    if plan.resume:
        card = plan.card
        dataset = load_dataset(card.data, "train")
        if card.is_custom and own is None:
            raise UserError(f"{out} trains your own model class; pass model= to resume it")
        if own is None:
            ckpt.check_saved(card, out)
        net = own if own is not None else _seeded_model(card.model, cfg.seed)
    else:
        spec = plan.spec
        dataset = load_dataset(spec, "train", allow_download=d["download"])
        if data_kind(dataset.shape) != data_kind(spec_shape(spec)):   # headers must not lie
            raise UserError(f"{d['data']}: its header says shape {list(spec_shape(spec))} but "
                            f"it holds samples of shape {list(dataset.shape)}")
        labelled, sizes = new_card(cfg, spec)   # {conditional, classes}, {num_classes}
        if own is not None:
            net, model_cfg = own, custom_config(own)
        else:
            overrides = plan.model or {}
            model_cfg = default_model_config(dataset.shape, cfg.objective, **overrides,
                                             **sizes)
            model_cfg, cfg = fit_recipe(dataset.shape, model_cfg, cfg, plan.given, overrides,
                                        _note(callback))
            net = _seeded_model(model_cfg, cfg.seed)
            cfg = choose_batch(net, dataset.shape, cfg, model_cfg, plan.given, _note(callback))
        card = RunCard(stage="train", data=spec, shape=list(dataset.shape), model=model_cfg,
                       train=cfg.to_json(), seed=cfg.seed, coupling=plan.coupling,
                       objective=build_objective(cfg, dataset.shape).to_json(),
                       normalization=dataset.normalization.to_json(), **labelled,
                       sample={"solver": "euler",
                               "steps": 1 if cfg.objective == "meanflow" else 100})
        if cfg.source is not None:   # data-to-data: x0 from a data set of the same shape
            card.source = card_source(cfg.source, dataset.shape, d["data"],
                                      root=d["data_root"], download=d["download"],
                                      resolution=d["resolution"], channels=d["channels"])
    io.check_fits(batch_bytes(cfg.batch_size // cfg.grad_accum, dataset.shape),
                  f"a batch of {cfg.batch_size // cfg.grad_accum} (batch_size / grad_accum)")
    x0s = Source(card.source, tuple(card.shape)) if card.source else None
    source = train_source(card, dataset, cfg, x0s)
    return _fit_stage(out, card, net.train(), source, cfg, plan.resume, plan.overwrite,
                      callback, evaluate, eval_n)


# ----------------------------------------------------------------------------- reflow/distill
def run_on_pairs(plan: StagePlan, *, callback: Callback | None = None,
                 evaluate: bool = True, eval_n: int | None = None) -> Checkpoint:
    """Run a ``reflow`` or ``distill`` plan."""
    cfg, out, module, stage = plan.config, plan.out, plan.model, plan.stage
    if plan.resume:
        card = plan.card
        if card.is_custom and module is None:
            raise UserError(f"{out} trains your own model class; pass model= to resume it")
        net = module if module is not None else ckpt.build_checked(card, out)
        source = pairs_source(card, open_pairs(out / card.parent["pairs"]), cfg)
        return _fit_stage(out, card, net.train(), source, cfg, True, False, callback,
                          evaluate, eval_n)
    pd, teacher = plan.pairs, plan.teacher
    tc = teacher.card
    net, model_cfg = student_model(teacher, plan.init_ema, cfg.objective, module,
                                   lambda c: _seeded_model(c, cfg.seed))
    pairs_round = int(pd.manifest.teacher.get("round", 1))
    card = RunCard(
        stage=stage, data=tc.data, shape=list(pd.shape), model=model_cfg, train=cfg.to_json(),
        seed=cfg.seed, round=pairs_round + 1 if stage == "reflow" else pairs_round,
        parent={"pairs": _rel(pd.path, out), "init": _rel(teacher.path, out),
                "init_weights": "ema" if plan.init_ema else "model",
                "init_round": int(tc.round), "init_stage": tc.stage,
                "init_objective": (tc.objective or {}).get("name", "flow"),
                "teacher_objective": pd.manifest.teacher.get("objective", "flow"),
                "pairs_round": pairs_round, "guidance": pd.manifest.guidance,
                "teacher": _rel(teacher_of(pd), out) if "path" in pd.manifest.teacher
                else None},
        objective=build_objective(cfg, tuple(pd.shape)).to_json(), normalization=tc.normalization,
        sample={"solver": "euler",
                "steps": 1 if cfg.objective == "meanflow" else plan.sample_steps},
        heldout=tc.heldout, source=tc.source, **plan.extra, **inherited(tc, pd.manifest))
    card.train["conditional"] = card.conditional   # followed from the teacher, not an option
    source = pairs_source(card, pd, cfg)
    if source.filter:   # Re-MeanFlow's cut: its threshold and the count dropped
        card.parent["pair_filter"] = source.filter
    return _fit_stage(out, card, net.train(), source, cfg, False, plan.overwrite, callback,
                      evaluate, eval_n)


def reflow(pairs: str | Path, out: str | Path, *, init: str | Path | None = None,
           init_ema: bool = True, options: Options = None, resume: bool = False,
           overwrite: bool = False, callback: Callback | None = None, evaluate: bool = True,
           eval_n: int | None = None, model: torch.nn.Module | None = None,
           file_options: dict | None = None) -> Checkpoint:
    """Train round k+1 on round k's pairs, starting from the teacher's (EMA) weights."""
    plan = plan_on_pairs("reflow", pairs, out, init=init, init_ema=init_ema, options=options,
                         resume=resume, overwrite=overwrite, file_options=file_options,
                         model=model)
    return run_on_pairs(plan, callback=callback, evaluate=evaluate, eval_n=eval_n)


MAX_DISTILL_K = 1000


def distill(pairs: str | Path, out: str | Path, *, k: int = 1, init: str | Path | None = None,
            init_ema: bool = True, options: Options = None, resume: bool = False,
            overwrite: bool = False, callback: Callback | None = None, evaluate: bool = True,
            eval_n: int | None = None, model: torch.nn.Module | None = None,
            file_options: dict | None = None) -> Checkpoint:
    """Train so that ``k`` Euler steps from x0 land on the paired z1 (t on a k-point grid)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_DISTILL_K:
        raise OptionError("k", "--k", f"must be a whole number in 1..{MAX_DISTILL_K}, got {k!r}")
    plan = plan_on_pairs("distill", pairs, out, init=init, init_ema=init_ema, options=options,
                         resume=resume, overwrite=overwrite, file_options=file_options,
                         model=model, k=k)
    return run_on_pairs(plan, callback=callback, evaluate=evaluate, eval_n=eval_n)


# ------------------------------------------------------------------------------------ couple
def couple(ckpt_dir: str | Path, out: str | Path, config: CoupleConfig | None = None,
           overwrite: bool = False, callback: Callback | None = None,
           model: torch.nn.Module | None = None) -> PairsManifest | None:
    """Solve the ODE of ``ckpt_dir`` from seeded noise; write or finish a coupling dataset.

    Rerunning with the same arguments resumes an interrupted run (missing shards only) and
    leaves a finished dataset untouched; different arguments are refused before anything is
    written. Returns the manifest on the main process, None on the others."""
    cfg = config or CoupleConfig()
    cfg.validate()
    teacher = Checkpoint(ckpt_dir)
    weights = teacher.weights_path(cfg.use_ema)
    out = Path(out)
    plan = make_plan(cfg, ckpt.sha256_file(weights))
    shard = min(cfg.shard_size, cfg.n) * math.prod(teacher.shape) * 4
    io.check_fits(3 * shard + 4 * cfg.batch_size * math.prod(teacher.shape) * 4,
                  f"coupling with shard_size {min(cfg.shard_size, cfg.n)} and batch_size "
                  f"{cfg.batch_size}")
    acc = make_accelerator()
    check_output(out, "pairs", [teacher.path], overwrite, resume=not overwrite and out.is_dir())
    state = "new" if overwrite else check_plan(out, plan)
    acc.wait_for_everyone()   # every process has judged the folder before anyone writes to it
    if state == "complete":
        if callback and acc.is_main_process:
            callback({"event": "complete"})
        return PairsManifest.read(out) if acc.is_main_process else None
    net = couple_teacher(teacher, cfg, acc.device, model)   # labels when conditional
    tc = teacher.card
    x0s = Source(tc.source, teacher.shape) if tc.source else None
    provenance = {"teacher": {"path": _rel(teacher.path, out), "sha256": plan.teacher_sha256,
                              "weights": "ema" if cfg.use_ema else "model",
                              "stage": tc.stage, "round": tc.round,
                              "objective": (tc.objective or {}).get("name", "flow")},
                  "data": tc.data, "seed": cfg.seed, "source": tc.source,
                  "solver": {"method": cfg.solver,
                             **({"rtol": cfg.rtol, "atol": cfg.atol}
                                if cfg.solver == "dopri5" else {"steps": cfg.steps})},
                  **label_provenance(tc, cfg)}

    def run(folder: Path):
        if acc.is_main_process:
            remove_stale_temps(folder)
            plan.write(folder)
        acc.wait_for_everyone()
        prov = {**provenance, "teacher": {**provenance["teacher"],
                                          "path": _rel(teacher.path, out)}}
        return write_pairs(net, teacher.shape, folder, cfg, prov, callback, acc, source=x0s,
                           data_metrics=lambda x0: data_ot(tc, x0, cfg.seed, cfg.ot_subsample))

    return write_stage(out, "pairs", overwrite, resume=not overwrite and out.is_dir(), acc=acc,
                       run=run)   # "new" may be a marked folder a killed first write left


# ------------------------------------------------------------------------------------ lineage


def new_card(cfg, spec: dict) -> tuple[dict, dict]:
    """Card fields and model overrides of a new ``train`` run."""
    if not cfg.conditional:
        return {}, {}
    classes = class_names(spec)
    return {"conditional": True, "classes": classes}, {"num_classes": len(classes)}


def inherited(teacher_card, manifest) -> dict:
    """Card fields a reflow/distill run takes from its teacher; the pairs must agree."""
    labelled = manifest.classes is not None
    if labelled != bool(teacher_card.conditional) or (
            labelled and list(manifest.classes) != list(teacher_card.classes)):
        raise CheckpointError("the pairs and the init model disagree on class labels "
                              f"(pairs: {manifest.classes}, model: {teacher_card.classes})")
    return {"conditional": True, "classes": list(teacher_card.classes)} if labelled else {}
