"""``rectflow run``: the whole pipeline in one folder, resumable stage by stage.

    train -> couple -> reflow -> couple -> reflow -> distill -> compare
    rf1      pairs1    rf2       pairs2    rf3       distill   compare

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

from . import checkpoint as ckpt
from . import io, presets, stages
from .checkpoint import Checkpoint
from .comparison import compare
from .errors import UserError
from .training import make_accelerator

Callback = Callable[[dict], None]
STAGES = ("rf1", "pairs1", "rf2", "pairs2", "rf3", "distill", "compare")
MODELS = ("rf1", "rf2", "rf3", "distill")


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
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            keys.append(f"{prefix}{k}")
    return keys


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
    if name == "rf1":
        return lambda: stages.train(
            d / "rf1", cfg["data"], data_root=cfg["data_root"], download=cfg["download"],
            coupling=cfg["train"]["coupling"], model=cfg["model"],
            options=presets.train_config(cfg), resume=_started(d / "rf1"), overwrite=_orphan(d / "rf1"), callback=cb,
            evaluate=False)
    if name in ("pairs1", "pairs2"):
        teacher = "rf1" if name == "pairs1" else "rf2"
        return lambda: stages.couple(d / teacher, d / name, presets.couple_config(cfg),
                                     callback=cb)
    if name in ("rf2", "rf3"):
        pairs = "pairs1" if name == "rf2" else "pairs2"
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
    return lambda: compare([d / m for m in MODELS], d / "compare", presets.eval_config(cfg),
                           callback=cb, overwrite=(d / "compare").exists())


def run(preset: str, out: str | Path, *, config_file: str | Path | None = None,
        overrides: dict | None = None, callback: Callback | None = None) -> dict:
    """Run (or continue) the pipeline of ``preset`` in ``out``; returns the ``run.json`` content
    with the comparison under ``"compare"``. Events: ``{"event": "stage", "stage", "status":
    "start" | "skipped" | "done", "seconds"}``, and each stage's own events in between."""
    cfg = presets.resolve(preset, config_file, overrides)
    out = Path(out)
    started = out.is_dir() and any(out.iterdir())
    stages.check_output(out, "run", resume=started)
    saved = out / "resolved.json"
    if saved.is_file():
        diff = _diff(ckpt.read_json(saved), cfg)
        if diff:
            raise UserError(f"{out} was started with different settings ({', '.join(diff[:5])}); "
                            "rerun with the same preset and --config to continue, or choose "
                            "another --out")
    # one process holds one Accelerate state: create it with the stages' settings
    state = make_accelerator(mixed_precision=cfg["train"]["mixed_precision"])
    main = state.is_main_process
    emit = callback if (callback is not None and main) else (lambda e: None)
    record = ckpt.read_json(out / "run.json") if (out / "run.json").is_file() else \
        {"format": "rectflow/run", "version": 1, "preset": preset, "stages": {}}
    lock = io.FolderLock(out, is_main=main)
    with lock:
        if main:
            io.ensure_output(out, "run", resume=started)
            ckpt.atomic_write_json(saved, cfg)
        state.wait_for_everyone()
        return _run_stages(out, cfg, record, state, emit)


def _run_stages(out: Path, cfg: dict, record: dict, state, emit) -> dict:
    main = state.is_main_process
    result = None
    for name in STAGES:
        folder = out / name
        entry = record["stages"].get(name, {})
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
        record["stages"][name] = entry
        record["total_seconds"] = round(sum(s.get("seconds") or 0
                                            for s in record["stages"].values()), 2)
        if main:
            ckpt.atomic_write_json(out / "run.json", record)
    if result is None and main:
        result = ckpt.read_json(out / "compare" / "compare.json")
    return {**record, "compare": result}
