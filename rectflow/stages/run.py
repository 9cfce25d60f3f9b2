"""``rectflow run``: the whole pipeline in one folder, resumable stage by stage.

    train -> couple -> reflow -> couple -> reflow -> distill -> compare
    rf1      pairs1    rf2       pairs2    rf3       distill   compare

With ``with_diffusion`` (preset ``moons-diffusion``) three stages come before compare: a VP
diffusion model trained with rf1's data, network, budget and optimizer settings
(``diffusion``), pairs from its probability-flow ODE (``pairs0``) and a 2-rectified flow
reflowed from them (``rf2d``, a flow objective whatever the teacher), so compare puts
diffusion beside rf1, rf2, rf3 and distill.

Each stage writes its own subfolder of ``out``. A model stage is complete when its
``config.json`` says ``"complete": true``, a coupling stage when its ``manifest.json`` exists,
``compare`` when ``compare.json`` exists; complete stages are skipped, an interrupted model stage
is resumed from its last snapshot and an interrupted coupling stage from its finished shards, so
rerunning the same command continues a run. The distilled student starts from rf3 (already
fitted to pairs2 with straight paths) and is trained on pairs2, the 2-rectified flow's pairs.

Beside the stages: ``resolved.json`` (the full config; a rerun with a different one is refused)
and ``run.json`` (per-stage status and wall-clock seconds, rewritten after every stage).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..records import checkpoint as ckpt
from .. import io
from . import presets, train as stages
from ..records.checkpoint import Checkpoint
from ..analysis.compare import compare
from ..data import data_spec, spec_shape
from ..errors import CheckpointError, UserError
from ..records import Comparison, ResolvedRun, RunLog
from ..machine.accelerator import make_accelerator

Callback = Callable[[dict], None]
STAGES = ("rf1", "pairs1", "rf2", "pairs2", "rf3", "distill", "compare")
MODELS = ("rf1", "rf2", "rf3", "distill")
# with_diffusion: a VP diffusion baseline trained like rf1, its PF-ODE pairs, and a
# 2-rectified flow reflowed from them ("straighten any ODE"), compared beside the rest
DIFFUSION_STAGES = ("diffusion", "pairs0", "rf2d")
DIFFUSION_MODELS = ("diffusion", "rf2d")
# with_meanflow: MeanFlow from scratch (mf1) at the total training steps of rf1 + rf2 + distill,
# and MeanFlow on round-2 pairs (mf2, from rf2) at the student's steps (Re-MeanFlow)
MEANFLOW_STAGES = ("mf1", "mf2")
TEACHERS = {"pairs1": "rf1", "pairs2": "rf2", "pairs0": "diffusion"}
PAIRS_OF = {"rf2": "pairs1", "rf3": "pairs2", "rf2d": "pairs0"}


def stages_of(cfg: dict) -> tuple[str, ...]:
    """The stages of a resolved config, in order (compare last)."""
    extra = (*(DIFFUSION_STAGES if cfg.get("with_diffusion") else ()),
             *(MEANFLOW_STAGES if cfg.get("with_meanflow") else ()))
    return (*STAGES[:-1], *extra, STAGES[-1])


def models_of(cfg: dict) -> tuple[str, ...]:
    return (*MODELS, *(DIFFUSION_MODELS if cfg.get("with_diffusion") else ()),
            *(MEANFLOW_STAGES if cfg.get("with_meanflow") else ()))


def is_complete(folder: Path, name: str) -> bool:
    if name.startswith("pairs"):
        return (folder / "manifest.json").is_file()
    if name == "compare":
        return (folder / "compare.json").is_file()
    try:
        return Checkpoint(folder).complete
    except UserError:
        return False


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The keys where the saved config ``a`` and the new one ``b`` differ. An option newer than
    the saved run (absent from ``a``) at its own default is no difference: such a run was
    made with that default's behaviour."""
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _diff(a[k], b[k], f"{prefix}{k}.")
        elif k not in a and _at_default(prefix.rstrip("."), k, b[k]):
            continue
        elif a.get(k) != b.get(k):
            keys.append(f"{prefix}{k}")
    return keys


def _at_default(section: str, key: str, value) -> bool:
    if section not in presets.SECTIONS:
        return False
    opt = presets.option_table(section).get(key)
    return opt is not None and presets.as_json(opt.default) == value


def _started(folder: Path) -> bool:
    """A model stage that saved at least once is resumed."""
    return (folder / ckpt.CONFIG).is_file()


def _orphan(folder: Path) -> bool:
    """A model stage folder this pipeline made that was killed before its first save is
    started again (it holds only a partial log)."""
    return folder.is_dir() and not _started(folder)


def _stage_runner(name: str, out: Path, cfg: dict, cb: Callback | None):
    """The call that makes stage ``name`` (each is resumable, so an interrupted one goes on)."""
    d = out   # the run folder; every stage reads and writes subfolders of it
    if name in ("rf1", "diffusion"):   # the same data, model and budget; only the objective
        options = presets.train_config(cfg)
        if name == "diffusion":
            options = options.replace(objective="diffusion")
        return lambda: stages.train(
            d / name, cfg["data"], data_root=cfg["data_root"], download=cfg["download"],
            coupling=cfg["train"]["coupling"], model=cfg["model"], options=options,
            resume=_started(d / name), overwrite=_orphan(d / name), callback=cb,
            evaluate=False)
    if name == "mf1":
        total = sum(presets.train_config(cfg, s).train_steps
                    for s in ("train", "reflow", "distill"))
        options = presets.train_config(cfg).replace(objective="meanflow", train_steps=total)
        return lambda: stages.train(
            d / name, cfg["data"], data_root=cfg["data_root"], download=cfg["download"],
            model=cfg["model"], options=options, resume=_started(d / name),
            overwrite=_orphan(d / name), callback=cb, evaluate=False)
    if name == "mf2":
        options = presets.train_config(cfg, "reflow").replace(
            objective="meanflow", train_steps=presets.train_config(cfg, "distill").train_steps)
        return lambda: stages.reflow(d / "pairs2", d / name, options=options,
                                     resume=_started(d / name), overwrite=_orphan(d / name),
                                     callback=cb, evaluate=False)
    if name in TEACHERS:
        return lambda: stages.couple(d / TEACHERS[name], d / name, presets.couple_config(cfg),
                                     callback=cb)
    if name in PAIRS_OF:
        pairs = PAIRS_OF[name]
        return lambda: stages.reflow(d / pairs, d / name,
                                     options=presets.train_config(cfg, "reflow"),
                                     resume=_started(d / name),
                                     overwrite=_orphan(d / name), callback=cb, evaluate=False)
    if name == "distill":
        return lambda: stages.distill(d / "pairs2", d / "distill", k=cfg["distill"]["k"],
                                      init=d / "rf3",
                                      options=presets.train_config(cfg, "distill"),
                                      resume=_started(d / "distill"),
                                      overwrite=_orphan(d / "distill"), callback=cb,
                                      evaluate=False)
    return lambda: compare([d / m for m in models_of(cfg)], d / "compare",
                           presets.eval_config(cfg), callback=cb,
                           overwrite=(d / "compare").exists())


def _check_before_writing(cfg: dict) -> None:
    """The data and the network every model stage builds, checked from headers and on the
    meta device (nothing read in full, nothing allocated), so a config that cannot run is
    refused before the run folder or its resolved.json is written."""
    from ..models import default_model_config, plan_model
    shape = spec_shape(data_spec(cfg["data"], cfg["data_root"], cfg["download"]))
    objectives = {"flow", cfg["train"]["objective"], *(["diffusion"] if cfg.get("with_diffusion")
                                                       else []),
                  *(["meanflow"] if cfg.get("with_meanflow") else [])}
    try:
        for objective in sorted(objectives):
            plan_model(default_model_config(shape, objective, **cfg["model"]))
    except CheckpointError as e:
        raise UserError(f"[model]: {e}") from None


def run(preset: str, out: str | Path, *, config_file: str | Path | None = None,
        overrides: dict | None = None, callback: Callback | None = None) -> dict:
    """Run (or continue) the pipeline of ``preset`` in ``out``; returns the ``run.json`` content
    with the :class:`~rectflow.records.Comparison` under ``"compare"`` (None on a process that
    is not the main one). Events: ``{"event": "stage", "stage", "status":
    "start" | "skipped" | "done", "seconds"}``, and each stage's own events in between."""
    cfg = presets.resolve(preset, config_file, overrides)
    _check_before_writing(cfg)
    out = Path(out)
    started = out.is_dir() and any(out.iterdir())
    stages.check_output(out, "run", resume=started)
    saved = ResolvedRun.path_in(out)
    if saved.is_file():
        diff = _diff(ResolvedRun.read(saved).config, cfg)
        if diff:
            raise UserError(f"{out} was started with different settings ({', '.join(diff[:5])}); "
                            "rerun with the same preset and --config to continue, or choose "
                            "another --out")
    # one process holds one Accelerate state: create it with the stages' settings
    state = make_accelerator(mixed_precision=cfg["train"]["mixed_precision"])
    main = state.is_main_process
    emit = callback if (callback is not None and main) else (lambda e: None)
    log = RunLog.read(out) if RunLog.path_in(out).is_file() else RunLog(preset=preset)
    lock = io.FolderLock(out, is_main=main)
    with lock:
        if main:
            io.ensure_output(out, "run", resume=started)
            ResolvedRun(config=cfg).write(out)
        state.wait_for_everyone()
        return _run_stages(out, cfg, log, state, emit)


def _run_stages(out: Path, cfg: dict, log: RunLog, state, emit) -> dict:
    main = state.is_main_process
    result = None
    for name in stages_of(cfg):
        folder = out / name
        entry = log.stages.get(name, {})
        if is_complete(folder, name):
            entry["status"] = "skipped"
            emit({"event": "stage", "stage": name, "status": "skipped",
                  "seconds": entry.get("seconds")})
        else:
            resumed = folder.exists()
            emit({"event": "stage", "stage": name, "status": "start", "resumed": resumed})
            started = time.perf_counter()
            if name != "compare":
                _stage_runner(name, out, cfg, emit if main else None)()
            elif main:
                result = _stage_runner(name, out, cfg, emit)()
            state.wait_for_everyone()
            entry = {"status": "resumed" if resumed else "ran",
                     "seconds": round(time.perf_counter() - started, 2)}
            emit({"event": "stage", "stage": name, "status": "done",
                  "seconds": entry["seconds"]})
        entry["path"] = name
        log.stages[name] = entry
        log.total_seconds = round(sum(s.get("seconds") or 0 for s in log.stages.values()), 2)
        if main:
            log.write(out)
    if result is None and main:
        result = Comparison.read(out / "compare")
    return {**log.to_json(), "compare": result}
