"""The stages behind every CLI command: train, couple, reflow, distill, sample.

Each stage takes configs (:mod:`rectflow.options`) and paths, writes one folder, and returns
its record: a :class:`~rectflow.checkpoint.Checkpoint` (its :class:`~rectflow.records.RunCard`
and weights), a :class:`~rectflow.records.PairsManifest`, or the samples. Every output folder
records its parent, so a run's lineage rf1 → pairs → rf2 → ... reads back with :func:`lineage`.
The friendlier keyword API for notebooks is :mod:`rectflow.api`.
"""
from __future__ import annotations

import io as _bytes
import os
from pathlib import Path
from typing import Callable

import math

import numpy as np
import torch

from . import checkpoint as ckpt
from . import io, threads
from .batchfit import choose_batch
from .checkpoint import Checkpoint
from .couplings import COUPLINGS, make_source
from .data import Normalization, data_kind, data_spec, load_dataset
from .data.pairs import PairsDataset, StoredPairs
from .errors import CheckpointError, OptionError, StageInterrupted, UserError
from .evaluation import noise, stage_report
from .models import build_model, custom_config, default_model_config
from .options import COUPLE, CoupleConfig, TrainConfig, table_of, train_config
from .pairgen import check_plan, make_plan, remove_stale_temps, write_pairs
from .records import PairsManifest, RunCard
from .report import save_samples_picture
from .seeding import derive_seed
from .solvers import solve
from .training import check_run, fit, make_accelerator

Callback = Callable[[dict], None]
Options = TrainConfig | dict | None


# ---------------------------------------------------------------------------- output folders
def check_output(out: str | Path, kind: str, inputs=(), overwrite: bool = False,
                 resume: bool = False) -> Path:
    """Refuse an output that cannot be written without risk (see :mod:`rectflow.io`);
    touches nothing, so a refused run leaves earlier output as it was."""
    return io.check_output(out, inputs=[p for p in inputs if p is not None],
                           overwrite=overwrite, kind=kind, resume=resume)


def writable_file(path: Path) -> None:
    """A file can be created at ``path``: its nearest existing ancestor is a writable folder."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {path}: {parent} is not writable")


def write_stage(out: Path, kind: str, overwrite: bool, resume: bool, acc, run):
    """``run(folder)`` with ``out`` locked against other writers. With ``overwrite`` the new
    run is written beside the old one and swapped in when it completes (or when it is
    interrupted, so it can be resumed); until then the old run is intact."""
    main = acc.is_main_process
    with io.FolderLock(out, is_main=main):
        if overwrite and not resume:
            if not main:
                acc.wait_for_everyone()
                return run(io.sibling(out, "new"))
            with io.staged_output(out, kind, overwrite=True,
                                  commit_on=(StageInterrupted,)) as work:
                acc.wait_for_everyone()
                result = run(work)
            return result
        if main:
            io.ensure_output(out, kind, resume=resume)
        acc.wait_for_everyone()
        return run(out)


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())


def _given(options: Options) -> dict:
    """What the caller set: every field of a TrainConfig, only the non-None keys of a dict."""
    if isinstance(options, TrainConfig):
        return options.to_json()
    return {k: v for k, v in (options or {}).items() if v is not None}


def _saved_card(out: Path, stage: str) -> RunCard:
    """The card of the run ``resume`` continues: it must be a rectflow run of this stage."""
    if not (out / ckpt.CONFIG).is_file():
        raise UserError(f"cannot resume {out}: it holds no rectflow run (no {ckpt.CONFIG}); "
                        "start a new one without resume")
    card = Checkpoint(out).card
    if card.stage != stage:
        raise UserError(f"cannot resume {out} as {stage}: it is a {card.stage} run")
    return card


def _resumed_config(card: RunCard, options: Options, file_options: dict | None) -> TrainConfig:
    """On resume the saved settings fill whatever the caller did not set."""
    cfg = train_config(card.stage, _given(options), card.train, file_options,
                       where=("options", "saved run", "config file"))
    if cfg.steps < card.steps_done:
        raise UserError(f"steps {cfg.steps} is below the {card.steps_done} steps already done")
    fixed = [k for k in ("batch_size", "grad_accum", "seed", "objective", "time_dist", "loss")
             if cfg.to_json()[k] != card.train.get(k, cfg.to_json()[k])]
    if fixed:
        raise UserError(f"a resumed run keeps its {', '.join(fixed)}; start a new run to "
                        "change them")
    card.train = cfg.to_json()
    return cfg


def _seeded_model(model_cfg: dict, seed: int) -> torch.nn.Module:
    """Initial weights from the run's seed alone; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(model_cfg)


def _fit_stage(out: Path, card: RunCard, model: torch.nn.Module, source, cfg: TrainConfig,
               resume: bool, overwrite: bool, callback, evaluate: bool,
               eval_n: int | None) -> Checkpoint:
    acc = make_accelerator(mixed_precision=cfg.mixed_precision,
                           gradient_accumulation_steps=cfg.grad_accum, log_with=cfg.log_with)
    check_run(cfg, acc.num_processes)   # before overwrite clears anything

    def run(folder: Path) -> None:
        threads.ensure(callback)   # and say so, now that the work starts
        fit(model, source, cfg, folder, card, resume=resume, callback=callback, accelerator=acc)
        if evaluate and acc.is_main_process:
            try:
                stage_report(folder, n=eval_n, device=acc.device, callback=callback,
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
    batch cut to what fits in memory."""
    own = model if isinstance(model, torch.nn.Module) else None
    data_path = Path(data_root) if data_root else Path(data) if Path(data).exists() else None
    out = check_output(out, "model", [data_path], overwrite, resume)
    if resume:
        card = _saved_card(out, "train")
        cfg = _resumed_config(card, options, file_options)
        dataset = load_dataset(card.data, "train")
        if card.is_custom and own is None:
            raise UserError(f"{out} trains your own model class; pass model= to resume it")
        net = own if own is not None else _seeded_model(card.model, cfg.seed)
    else:
        cfg = train_config("train", _given(options), file_options,
                           where=("options", "config file"))
        if coupling not in COUPLINGS:
            raise UserError(f"coupling must be one of {', '.join(COUPLINGS)}, got {coupling!r}")
        spec = data_spec(data, data_root, download, resolution, channels, _note(callback))
        dataset = load_dataset(spec, "train", allow_download=download)
        cfg = train_config("train", _given(options), file_options, kind=data_kind(dataset.shape),
                           where=("options", "config file"))
        if own is not None:
            net, model_cfg = own, custom_config(own)
        else:
            model_cfg = default_model_config(dataset.shape, **(model or {}))
            net = _seeded_model(model_cfg, cfg.seed)
            cfg = choose_batch(net, dataset.shape, cfg, model_cfg,
                               {**(file_options or {}), **_given(options)}, _note(callback))
        card = RunCard(stage="train", data=spec, shape=list(dataset.shape), model=model_cfg,
                       train=cfg.to_json(), seed=cfg.seed, coupling=coupling,
                       objective={"name": cfg.objective},
                       normalization=dataset.normalization.to_json())
    source = make_source(dataset, card.coupling, cfg.seed)
    return _fit_stage(out, card, net.train(), source, cfg, resume, overwrite, callback,
                      evaluate, eval_n)


# ----------------------------------------------------------------------------- reflow/distill
def open_pairs(pairs: str | Path) -> PairsDataset:
    """Open a coupling dataset and check every shard before any output is touched."""
    p = PairsDataset(pairs)
    p.verify()
    return p


def teacher_of(pairs: PairsDataset) -> Path:
    t = pairs.manifest.teacher.get("path")
    if t is None:
        raise CheckpointError(f"{pairs.path} does not name its teacher; pass init")
    return pairs.path / t


def _train_on_pairs(stage: str, pairs: str | Path, out: str | Path, init, init_ema: bool,
                    options: Options, sample_steps: int, resume: bool, overwrite: bool,
                    callback, evaluate: bool, eval_n: int | None, module,
                    extra: dict, file_options: dict | None = None) -> Checkpoint:
    out = check_output(out, "model", [pairs, init], overwrite, resume)
    if resume:
        card = _saved_card(out, stage)
        cfg = _resumed_config(card, options, file_options)
        if card.is_custom and module is None:
            raise UserError(f"{out} trains your own model class; pass model= to resume it")
        net = module if module is not None else build_model(card.model)
        source = StoredPairs(open_pairs(out / card.parent["pairs"]), cfg.seed)
        return _fit_stage(out, card, net.train(), source, cfg, True, False, callback,
                          evaluate, eval_n)
    pd = open_pairs(pairs)
    cfg = train_config(stage, _given(options), extra.pop("time_layer", None), file_options,
                       where=("options", stage, "config file"), kind=data_kind(pd.shape))
    init_path = Path(init) if init is not None else teacher_of(pd)
    teacher = Checkpoint(init_path)
    if tuple(teacher.shape) != tuple(pd.shape):
        raise CheckpointError(f"pairs in {pd.path} have shape {list(pd.shape)} but init "
                              f"{init_path} is a model of shape {list(teacher.shape)}")
    net = teacher.load_model(ema=init_ema, module=module)
    tc = teacher.card
    pairs_round = int(pd.manifest.teacher.get("round", 1))
    card = RunCard(
        stage=stage, data=tc.data, shape=list(pd.shape), model=tc.model, train=cfg.to_json(),
        seed=cfg.seed, round=pairs_round + 1 if stage == "reflow" else pairs_round,
        parent={"pairs": _rel(pd.path, out), "init": _rel(init_path, out),
                "init_weights": "ema" if init_ema else "model",
                "init_round": int(tc.round), "init_stage": tc.stage,
                "pairs_round": pairs_round,
                "teacher": _rel(teacher_of(pd), out) if "path" in pd.manifest.teacher
                else None},
        objective={"name": cfg.objective}, normalization=tc.normalization,
        sample={"solver": "euler", "steps": sample_steps}, heldout=tc.heldout, **extra)
    source = StoredPairs(pd, cfg.seed)
    return _fit_stage(out, card, net.train(), source, cfg, False, overwrite, callback,
                      evaluate, eval_n)


def reflow(pairs: str | Path, out: str | Path, *, init: str | Path | None = None,
           init_ema: bool = True, options: Options = None, resume: bool = False,
           overwrite: bool = False, callback: Callback | None = None, evaluate: bool = True,
           eval_n: int | None = None, model: torch.nn.Module | None = None,
           file_options: dict | None = None) -> Checkpoint:
    """Train round k+1 on round k's pairs, starting from the teacher's (EMA) weights."""
    return _train_on_pairs("reflow", pairs, out, init, init_ema, options, 100, resume,
                           overwrite, callback, evaluate, eval_n, model, {}, file_options)


def reflow_defaults() -> TrainConfig:
    return train_config("reflow")


def distill_defaults(k: int = 1) -> TrainConfig:
    return train_config("distill", {"time_dist": {"kind": "grid", "k": k}})


MAX_DISTILL_K = 1000


def distill(pairs: str | Path, out: str | Path, *, k: int = 1, init: str | Path | None = None,
            init_ema: bool = True, options: Options = None, resume: bool = False,
            overwrite: bool = False, callback: Callback | None = None, evaluate: bool = True,
            eval_n: int | None = None, model: torch.nn.Module | None = None,
            file_options: dict | None = None) -> Checkpoint:
    """Train so that ``k`` Euler steps from x0 land on the paired z1 (t on a k-point grid)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_DISTILL_K:
        raise OptionError("k", "--k", f"must be a whole number in 1..{MAX_DISTILL_K}, got {k!r}")
    given = _given(options)
    given.pop("time_dist", None)   # a student's times are its k-step grid
    return _train_on_pairs("distill", pairs, out, init, init_ema, given, k, resume,
                           overwrite, callback, evaluate, eval_n, model,
                           {"distill_k": k, "time_layer": {"time_dist": {"kind": "grid", "k": k}}},
                           {k2: v for k2, v in (file_options or {}).items() if k2 != "time_dist"})


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
    acc = make_accelerator()
    check_output(out, "pairs", [teacher.path], overwrite, resume=not overwrite and out.is_dir())
    state = "new" if overwrite else check_plan(out, plan)
    acc.wait_for_everyone()   # every process has judged the folder before anyone writes to it
    if state == "complete":
        if callback and acc.is_main_process:
            callback({"event": "complete"})
        return PairsManifest.read(out) if acc.is_main_process else None
    net = teacher.load_model(ema=cfg.use_ema, device=acc.device, module=model)
    tc = teacher.card
    provenance = {"teacher": {"path": _rel(teacher.path, out), "sha256": plan.teacher_sha256,
                              "weights": "ema" if cfg.use_ema else "model",
                              "stage": tc.stage, "round": tc.round},
                  "data": tc.data, "seed": cfg.seed,
                  "solver": {"method": cfg.solver,
                             **({"rtol": cfg.rtol, "atol": cfg.atol}
                                if cfg.solver == "dopri5" else {"steps": cfg.steps})}}

    def run(folder: Path):
        if acc.is_main_process:
            remove_stale_temps(folder)
            plan.write(folder)
        acc.wait_for_everyone()
        prov = {**provenance, "teacher": {**provenance["teacher"],
                                          "path": _rel(teacher.path, out)}}
        return write_pairs(net, teacher.shape, folder, cfg, prov, callback, acc)

    return write_stage(out, "pairs", overwrite, resume=state == "resume", acc=acc, run=run)


# ------------------------------------------------------------------------------------ sample
MAX_SAMPLE_BYTES_FRACTION = 0.5


def sample_tensor(model: torch.nn.Module, shape: tuple[int, ...], n: int, *, steps: int,
                  solver: str = "euler", seed: int = 0, rtol: float = 1e-5,
                  atol: float = 1e-5, device: str | torch.device = "cpu"):
    """``n`` samples in model space and the solver's Solution (for its NFE)."""
    x0 = noise(n, shape, seed, "sample-noise").to(device)
    return solve(model.to(device).eval(), x0, method=solver, steps=steps, rtol=rtol, atol=atol)


def sample(ckpt_dir: str | Path, out: str | Path, *, n: int = 1000, steps: int | None = None,
           solver: str = "euler", seed: int = 0, use_ema: bool = True, rtol: float = 1e-5,
           atol: float = 1e-5, overwrite: bool = False,
           model: torch.nn.Module | None = None) -> dict:
    """Write ``n`` samples as ``.npy`` in the data's own units (images clipped to the data's
    range), and a picture beside it."""
    opts = table_of(COUPLE)
    n = opts["n"].check(n)
    solver = opts["solver"].check(solver)
    ck = Checkpoint(ckpt_dir)
    steps = opts["steps"].check(int(steps if steps is not None else ck.card.sample["steps"]))
    rtol, atol = opts["rtol"].check(rtol), opts["atol"].check(atol)
    out = Path(out)
    if out.suffix != ".npy":
        out = out.with_suffix(out.suffix + ".npy") if out.suffix else out.with_suffix(".npy")
    picture = out.with_suffix(".png")
    for p in (out, picture):
        if p.exists() and not overwrite:
            raise UserError(f"{p} already exists; pass overwrite to replace it")
    if ck.path.resolve() in out.resolve().parents:
        raise UserError(f"{out} lies inside the model folder {ck.path}; write elsewhere")
    for p in (out, picture):
        if p.is_dir() or p.is_symlink():
            raise UserError(f"{p} is a folder or a link; name a file")
    writable_file(out)
    io.check_fits(4 * n * math.prod(ck.shape) * 4, f"sampling n={n}")
    net = ck.load_model(ema=use_ema, module=model)
    sol = sample_tensor(net, ck.shape, n, steps=steps, solver=solver, seed=seed, rtol=rtol,
                        atol=atol)
    is_image = len(ck.shape) == 3
    x = sol.x.clamp(-1, 1) if is_image else sol.x
    norm = Normalization(**(ck.card.normalization or {}))
    raw = norm.to_raw(x)
    if is_image:   # back to the data's own 8-bit pixels
        raw = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = _bytes.BytesIO()
    np.save(buf, raw.numpy(), allow_pickle=False)
    ckpt.atomic_write_bytes(out, buf.getvalue())
    pic = save_samples_picture(x if is_image else raw, picture, is_image,
                               title=f"{ck.path.name}: {solver}, {steps} steps, {sol.nfe:g} NFE")
    return {"samples": str(out), "picture": str(pic) if pic else None, "nfe": sol.nfe,
            "steps": steps, "shape": list(raw.shape)}


# ------------------------------------------------------------------------------------ lineage
def lineage(ckpt_dir: str | Path) -> list[dict]:
    """The chain of checkpoints from the first round to ``ckpt_dir``, oldest first."""
    chain, path, seen = [], Path(ckpt_dir).resolve(), set()
    while path is not None and path not in seen:
        seen.add(path)
        card = Checkpoint(path).card
        chain.append({"path": str(path), "stage": card.stage, "round": card.round})
        parent = card.parent or {}
        nxt = parent.get("init") if card.stage == "distill" else \
            parent.get("teacher") or (parent.get("init") if card.stage != "train" else None)
        path = (path / nxt).resolve() if nxt else None
    return chain[::-1]
