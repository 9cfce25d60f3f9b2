"""The Python API behind every CLI command: train, sample, couple, reflow, distill.

Each stage writes one folder whose ``config.json`` (or ``manifest.json`` for pairs) records
its parent, so a run's lineage rf1 → pairs → rf2 → ... can be read back with :func:`lineage`.
"""
from __future__ import annotations

import io
import os
import platform
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from . import checkpoint as ckpt
from .couplings import COUPLINGS, make_source
from .data import Normalization, data_spec, load_dataset
from .data.pairs import MANIFEST, PLAN, PairsDataset, StoredPairs
from .errors import CheckpointError, UserError
from .evaluation import evaluate_model, noise
from .models import build_model, default_model_config
from .pairgen import CoupleConfig, check_plan, remove_stale_temps, write_pairs
from .path import TimeDist
from .report import save_samples_picture
from .seeding import derive_seed
from .solvers import METHODS, solve
from .training import TrainConfig, fit, make_accelerator

Callback = Callable[[dict], None]
EVAL_NFES = (1, 2, 4, 8)


def versions() -> dict:
    import accelerate
    return {"rectflow": __version__, "torch": torch.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version()}


# ---------------------------------------------------------------------------- output folders
def check_output(out: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse to write into an existing, non-empty folder unless told; check it is writable.
    Touches nothing, so a refused run leaves earlier output as it was."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise UserError(f"--out {out} already exists; pass --overwrite to replace it "
                        "or --resume to continue it")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write to {out}: {parent} is not writable")
    return out


def open_output(out: Path, overwrite: bool = False) -> Path:
    """Called only once every input has been validated."""
    if overwrite and out.exists():
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out}: {e.strerror}") from None
    return out


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())


# ------------------------------------------------------------------------------------ train
def _post_eval(out: Path, config: dict, device) -> dict:
    """Evaluate a finished model folder and store ``metrics.json``."""
    ck = ckpt.Checkpoint(out)
    dataset = load_dataset(config["data"], "test")
    nfes = sorted(set(EVAL_NFES) | {int(config["sample"]["steps"])})
    metrics = evaluate_model(ck.load_model(ema=True, device=device), dataset, nfes=nfes,
                             seed=config["seed"], device=device)
    ckpt.atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _fit_stage(out: Path, base: dict, model: torch.nn.Module, source, cfg: TrainConfig,
               resume: bool, overwrite: bool, callback, evaluate: bool) -> Path:
    acc = make_accelerator(mixed_precision=cfg.mixed_precision,
                           gradient_accumulation_steps=cfg.grad_accum, log_with=cfg.log_with,
                           project_dir=str(out))
    cfg.validate(acc.num_processes)   # before --overwrite clears anything
    if acc.is_main_process:
        open_output(out, overwrite and not resume)
    acc.wait_for_everyone()
    fit(model, source, cfg, out, base, resume=resume, callback=callback, accelerator=acc)
    if evaluate and acc.is_main_process:
        if callback:
            callback({"event": "evaluate"})
        _post_eval(out, base, acc.device)
    acc.wait_for_everyone()
    return out


def _resume_config(out: Path, steps: int | None) -> tuple[dict, TrainConfig]:
    """On --resume the saved settings win; only the number of steps may grow."""
    saved = ckpt.Checkpoint(out).config
    cfg = TrainConfig.from_json(saved["train"])
    if steps is not None:
        if steps < saved.get("steps_done", 0):
            raise UserError(f"--steps {steps} is below the {saved['steps_done']} steps done")
        cfg.steps = steps
    saved["train"] = cfg.to_json()
    return saved, cfg


def _seeded_model(model_cfg: dict, seed: int) -> torch.nn.Module:
    """Initial weights from the run's seed alone, so a run is the same whatever ran before it
    in the process (a notebook, a test session); the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(model_cfg)


def train(out: str | Path, data: str = "moons", *, data_root: str | None = None,
          download: bool = False, resolution: int = 32, channels: int = 3,
          coupling: str = "independent", model: dict | None = None,
          config: TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
          callback: Callback | None = None, evaluate: bool = True) -> Path:
    """Train a 1-rectified flow (or, with ``coupling='ot'``, minibatch-OT flow matching)."""
    cfg = config or TrainConfig()
    out = check_output(out, overwrite, resume)
    if resume and (out / ckpt.CONFIG).is_file():
        base, cfg = _resume_config(out, cfg.steps)
        coupling = base.get("coupling", "independent")
        dataset = load_dataset(base["data"], "train")
        net = _seeded_model(base["model"], cfg.seed)
    else:
        cfg.validate()
        if coupling not in COUPLINGS:
            raise UserError(f"unknown coupling {coupling!r}; choose from {', '.join(COUPLINGS)}")
        spec = data_spec(data, data_root, download, resolution, channels)
        dataset = load_dataset(spec, "train")
        model_cfg = default_model_config(dataset.shape, **(model or {}))
        net = _seeded_model(model_cfg, cfg.seed)
        base = {"format": "rectflow/checkpoint", "version": 1, "stage": "train", "round": 1,
                "parent": None, "data": spec, "shape": list(dataset.shape), "model": model_cfg,
                "coupling": coupling, "train": cfg.to_json(), "seed": cfg.seed,
                "normalization": dataset.normalization.to_json(),
                "sample": {"solver": "euler", "steps": 100}, "versions": versions()}
    source = make_source(dataset, coupling, cfg.seed)
    return _fit_stage(out, base, net, source, cfg, resume, overwrite, callback, evaluate)


# ----------------------------------------------------------------------------- reflow/distill
def _open_pairs(pairs: str | Path) -> PairsDataset:
    """Open a coupling dataset and check every shard before --out is touched."""
    p = PairsDataset(pairs)
    p.verify()
    return p


def _teacher_of(pairs: PairsDataset) -> Path:
    t = pairs.manifest.get("teacher", {}).get("path")
    if t is None:
        raise CheckpointError(f"{pairs.path} does not name its teacher; pass --init")
    path = (pairs.path / t) if not Path(t).is_absolute() else Path(t)
    return path


def _train_on_pairs(stage: str, pairs: str | Path, out: str | Path, init: str | Path | None,
                    init_ema: bool, cfg: TrainConfig, sample_steps: int, resume: bool,
                    overwrite: bool, callback, evaluate: bool, extra: dict) -> Path:
    out = check_output(out, overwrite, resume)
    if resume and (out / ckpt.CONFIG).is_file():
        base, cfg = _resume_config(out, cfg.steps)
        net = build_model(base["model"])
        source = StoredPairs(_open_pairs(Path(out) / base["parent"]["pairs"]), cfg.seed)
        return _fit_stage(out, base, net, source, cfg, True, False, callback, evaluate)
    cfg.validate()
    pd = _open_pairs(pairs)
    init_path = Path(init) if init is not None else _teacher_of(pd)
    teacher = ckpt.Checkpoint(init_path)
    if tuple(teacher.shape) != tuple(pd.shape):
        raise CheckpointError(f"pairs in {pd.path} have shape {list(pd.shape)} but --init "
                              f"{init_path} is a model of shape {list(teacher.shape)}")
    net = teacher.load_model(ema=init_ema)
    tc = teacher.config
    base = {"format": "rectflow/checkpoint", "version": 1, "stage": stage,
            "round": int(tc.get("round", 1)) + (1 if stage == "reflow" else 0),
            "parent": {"pairs": _rel(pd.path, out), "init": _rel(init_path, out),
                       "init_weights": "ema" if init_ema else "model",
                       "teacher": _rel(_teacher_of(pd), out) if "teacher" in pd.manifest
                       else None},
            "data": tc["data"], "shape": list(pd.shape), "model": tc["model"],
            "train": cfg.to_json(), "seed": cfg.seed, "normalization": tc.get("normalization"),
            "sample": {"solver": "euler", "steps": sample_steps}, "versions": versions(),
            **extra}
    source = StoredPairs(pd, cfg.seed)
    return _fit_stage(out, base, net.train(), source, cfg, resume, overwrite, callback, evaluate)


def reflow(pairs: str | Path, out: str | Path, *, init: str | Path | None = None,
           init_ema: bool = True, config: TrainConfig | None = None, resume: bool = False,
           overwrite: bool = False, callback: Callback | None = None,
           evaluate: bool = True) -> Path:
    """Train round k+1 on round k's pairs, starting from the teacher's (EMA) weights."""
    cfg = config or reflow_defaults()
    return _train_on_pairs("reflow", pairs, out, init, init_ema, cfg, 100, resume, overwrite,
                           callback, evaluate, {})


def distill(pairs: str | Path, out: str | Path, *, k: int = 1, init: str | Path | None = None,
            init_ema: bool = True, config: TrainConfig | None = None, resume: bool = False,
            overwrite: bool = False, callback: Callback | None = None,
            evaluate: bool = True) -> Path:
    """Train so that ``k`` Euler steps from x0 land on the paired z1 (t on a k-point grid)."""
    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    cfg = config or distill_defaults(k)
    cfg.time_dist = TimeDist("grid", k=k)
    return _train_on_pairs("distill", pairs, out, init, init_ema, cfg, k, resume, overwrite,
                           callback, evaluate, {"distill_k": k})


def reflow_defaults() -> TrainConfig:
    return TrainConfig(steps=2000, lr=3e-4, warmup=0, time_dist=TimeDist("u-shaped", a=4.0))


def distill_defaults(k: int = 1) -> TrainConfig:
    return TrainConfig(steps=2000, lr=3e-4, warmup=0, time_dist=TimeDist("grid", k=k))


# ------------------------------------------------------------------------------------ couple
def couple(ckpt_dir: str | Path, out: str | Path, config: CoupleConfig | None = None,
           overwrite: bool = False, callback: Callback | None = None) -> dict | None:
    """Solve the ODE of ``ckpt_dir`` from seeded noise; write or finish a coupling dataset.

    Rerunning with the same arguments resumes an interrupted run (missing shards only) and
    leaves a finished dataset untouched; different arguments are refused before anything is
    written. Returns the manifest on the main process, None on the others."""
    cfg = config or CoupleConfig()
    cfg.validate()
    teacher = ckpt.Checkpoint(ckpt_dir)
    weights = teacher.weights_path(cfg.use_ema)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is a file")
    plan = {**cfg.plan(), "teacher_sha256": ckpt.sha256_file(weights)}
    acc = make_accelerator()
    state = "new" if overwrite else check_plan(out, plan)
    if state != "complete":   # check_plan judged what is in the folder; this checks access
        check_output(out, overwrite, resume=True)
    acc.wait_for_everyone()   # every process has judged the folder before anyone writes to it
    if state == "complete":
        if callback and acc.is_main_process:
            callback({"event": "complete"})
        return ckpt.read_json(out / MANIFEST) if acc.is_main_process else None
    if acc.is_main_process:
        open_output(out, overwrite)
        remove_stale_temps(out)
        ckpt.atomic_write_json(out / PLAN, plan)
    acc.wait_for_everyone()
    provenance = {"teacher": {"path": _rel(teacher.path, out), "sha256": plan["teacher_sha256"],
                              "weights": "ema" if cfg.use_ema else "model",
                              "stage": teacher.config.get("stage"),
                              "round": teacher.config.get("round", 1)},
                  "data": teacher.config["data"], "seed": cfg.seed, "versions": versions(),
                  "solver": {"method": cfg.solver,
                             **({"rtol": cfg.rtol, "atol": cfg.atol}
                                if cfg.solver == "dopri5" else {"steps": cfg.steps})}}
    return write_pairs(teacher, out, cfg, provenance, callback, acc)


# ------------------------------------------------------------------------------------ sample
def sample(ckpt_dir: str | Path, out: str | Path, *, n: int = 1000, steps: int | None = None,
           solver: str = "euler", seed: int = 0, use_ema: bool = True, rtol: float = 1e-5,
           atol: float = 1e-5, overwrite: bool = False) -> dict:
    """Write ``n`` samples as ``.npy`` in the data's own units, and a picture beside it."""
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if solver not in METHODS:
        raise UserError(f"unknown solver {solver!r}; choose from {', '.join(METHODS)}")
    ck = ckpt.Checkpoint(ckpt_dir)
    steps = int(steps if steps is not None else ck.config.get("sample", {}).get("steps", 100))
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    out = Path(out)
    if out.suffix != ".npy":
        out = out.with_suffix(out.suffix + ".npy") if out.suffix else out.with_suffix(".npy")
    picture = out.with_suffix(".png")
    for p in (out, picture):
        if p.exists() and not overwrite:
            raise UserError(f"{p} already exists; pass --overwrite to replace it")
    check_output(out.parent, overwrite=True)
    model = ck.load_model(ema=use_ema)
    x0 = noise(n, ck.shape, seed, "sample-noise")
    sol = solve(model, x0, method=solver, steps=steps, rtol=rtol, atol=atol)
    norm = Normalization(**(ck.config.get("normalization") or {}))
    raw = norm.to_raw(sol.x).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, raw, allow_pickle=False)
    ckpt.atomic_write_bytes(out, buf.getvalue())
    is_image = len(ck.shape) == 3
    pic = save_samples_picture(sol.x, picture, is_image,
                               title=f"{ck.path.name}: {solver}, {sol.nfe} NFE")
    return {"samples": str(out), "picture": str(pic) if pic else None, "nfe": sol.nfe,
            "shape": list(raw.shape)}


# ------------------------------------------------------------------------------------ lineage
def lineage(ckpt_dir: str | Path) -> list[dict]:
    """The chain of checkpoints from the first round to ``ckpt_dir``, oldest first."""
    chain, path, seen = [], Path(ckpt_dir).resolve(), set()
    while path is not None and path not in seen:
        seen.add(path)
        cfg = ckpt.Checkpoint(path).config
        chain.append({"path": str(path), "stage": cfg.get("stage"), "round": cfg.get("round", 1)})
        parent = cfg.get("parent") or {}
        nxt = parent.get("teacher") or (parent.get("init") if cfg.get("stage") != "train" else None)
        path = (path / nxt).resolve() if nxt else None
    return chain[::-1]
