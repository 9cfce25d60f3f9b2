"""Writing a coupling dataset: noise in, the teacher's ODE solved, (x0, z1) shards out.

Determinism: the noise of index ``i`` comes from the generator seeded by ``(seed, i // BLOCK)``
and the teacher is always evaluated on chunks of ``eval_chunk`` rows counted from the shard's
start (matrix kernels round differently for different row counts), so shards are
byte-identical for any ``--batch-size`` and any number of processes (for fixed-grid solvers;
``dopri5`` picks its steps per batch, so its pairs depend on the batch).

Resumption: shard ``s`` is done when its sidecar ``pairs-s.json`` exists and its sha256 still
matches; a rerun writes only the missing shards. Process ``r`` of ``W`` owns shards
``s ≡ r (mod W)``; the main process writes ``manifest.json`` once all are done.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator

from . import checkpoint as ckpt
from .data.pairs import MANIFEST, PLAN, shard_name
from .errors import UserError
from .metrics import PathStats, ot_cost
from .seeding import generator
from .solvers import METHODS, chunked, solve
from .training import make_accelerator

BLOCK = 1024   # noise block: indices [b*BLOCK, (b+1)*BLOCK) share one generator


@dataclass
class CoupleConfig:
    n: int = 100_000
    solver: str = "rk4"
    steps: int = 32
    rtol: float = 1e-5
    atol: float = 1e-5
    seed: int = 0
    batch_size: int = 4096
    shard_size: int = 50_000
    eval_chunk: int = 1024
    use_ema: bool = True
    metrics_subsample: int | None = None   # None: path metrics over every pair
    ot_subsample: int = 1000   # exact assignment is O(m^3): 2000 points cost ~8x as much

    def validate(self) -> None:
        for name in ("n", "steps", "batch_size", "shard_size", "eval_chunk", "ot_subsample"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.solver not in METHODS:
            raise UserError(f"unknown solver {self.solver!r}; choose from {', '.join(METHODS)}")
        if self.metrics_subsample is not None and self.metrics_subsample < 1:
            raise UserError("--metrics-subsample must be >= 1")
        if not (self.rtol > 0 and self.atol > 0):
            raise UserError("--rtol and --atol must be > 0")

    def plan(self) -> dict:
        """The arguments that determine the dataset (batch size does not), checked on resume."""
        d = {**asdict(self), "noise_block": BLOCK}
        d.pop("batch_size")
        for k in (("steps",) if self.solver == "dopri5" else ("rtol", "atol")):
            d.pop(k)
        return d


def block_noise(start: int, stop: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise for indices [start, stop): each BLOCK of indices from its own generator."""
    parts = []
    for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        z = torch.randn((BLOCK, *shape), generator=generator(seed, "noise", b))
        lo, hi = max(start, b * BLOCK) - b * BLOCK, min(stop, (b + 1) * BLOCK) - b * BLOCK
        parts.append(z[lo:hi])
    return torch.cat(parts)


def _sidecar(s: int) -> str:
    return shard_name(s).replace(".safetensors", ".json")


def _shard_done(out: Path, s: int) -> dict | None:
    side = out / _sidecar(s)
    if not side.is_file() or not (out / shard_name(s)).is_file():
        return None
    info = ckpt.read_json(side)
    if ckpt.sha256_file(out / shard_name(s)) != info.get("sha256"):
        return None   # torn or altered: regenerate it
    return info


def _is_temp(p: Path) -> bool:
    """A file :func:`rectflow.checkpoint.atomic_write_bytes` had not yet renamed into place."""
    return p.name.startswith(".") and p.name.endswith(".tmp")


def remove_stale_temps(out: Path) -> None:
    """Drop the temporary files of writes a killed run left half done (never a final name)."""
    for p in out.iterdir():
        if _is_temp(p):
            p.unlink(missing_ok=True)


def _solve_shard(velocity, cfg: CoupleConfig, x0: torch.Tensor, lo: int, device,
                 stats: PathStats, progress: Callable[[int], None]) -> tuple[torch.Tensor, int]:
    """z1 for the noise ``x0`` of the shard starting at index ``lo``.

    Solve batches are whole eval chunks counted from the shard's start, so each row meets the
    model at the same position of the same chunk whatever ``--batch-size`` is; a batch size
    below ``eval_chunk`` is rounded up to one chunk (the model sees a chunk anyway)."""
    rows = max(1, cfg.batch_size // cfg.eval_chunk) * cfg.eval_chunk
    tracked = cfg.n if cfg.metrics_subsample is None else min(cfg.n, cfg.metrics_subsample)
    x1s, nfe = [], 0
    for a in range(0, x0.shape[0], rows):
        z0 = x0[a:a + rows].to(device)
        k = max(0, min(z0.shape[0], tracked - lo - a))   # rows whose path metrics are tracked
        obs = (lambda t, dt, z, v: stats.observer(t, dt, z[:k], v[:k])) if k else None
        sol = solve(velocity, z0, method=cfg.solver, steps=cfg.steps, rtol=cfg.rtol,
                    atol=cfg.atol, observer=obs)
        if k:
            stats.finish(z0[:k], sol.x[:k])
        nfe = max(nfe, sol.nfe)
        x1s.append(sol.x.cpu())
        progress(z0.shape[0])
    return torch.cat(x1s), nfe


def write_pairs(teacher: ckpt.Checkpoint, out: str | Path, cfg: CoupleConfig, provenance: dict,
                callback: Callable[[dict], None] | None = None,
                accelerator: Accelerator | None = None) -> dict | None:
    """Generate (or finish) the coupling dataset in ``out``. Returns the manifest on the main
    process (None elsewhere).

    Memory holds one shard at a time: each shard goes to disk, with a sidecar holding its
    checksum and metric sums, before the next one starts."""
    cfg.validate()
    out = Path(out)
    acc = accelerator or make_accelerator()
    shape = teacher.shape
    model = teacher.load_model(ema=cfg.use_ema, device=acc.device)
    velocity = chunked(model, cfg.eval_chunk)
    n_shards = math.ceil(cfg.n / cfg.shard_size)
    world = acc.num_processes
    mine = [s for s in range(n_shards) if s % world == acc.process_index]
    emit = callback if (callback is not None and acc.is_main_process) else (lambda e: None)
    emit({"event": "start", "total": cfg.n, "shards": n_shards})
    done = 0

    def progress(k: int) -> None:   # the main process shows its own share times the world
        nonlocal done
        done += k
        emit({"event": "progress", "done": min(cfg.n, done * world)})

    for s in mine:
        lo, hi = s * cfg.shard_size, min((s + 1) * cfg.shard_size, cfg.n)
        if _shard_done(out, s) is not None:
            progress(hi - lo)
            continue
        t0 = time.perf_counter()
        stats = PathStats(math.prod(shape))
        x0 = block_noise(lo, hi, shape, cfg.seed)
        x1, nfe = _solve_shard(velocity, cfg, x0, lo, acc.device, stats, progress)
        sha = ckpt.save_tensors(out / shard_name(s), {
            "x0": x0, "x1": x1, "index": torch.arange(lo, hi, dtype=torch.int64)})
        ckpt.atomic_write_json(out / _sidecar(s), {
            "file": shard_name(s), "start": lo, "count": hi - lo, "sha256": sha,
            "nfe": nfe, "stats": stats.state(), "process": acc.process_index,
            "seconds": time.perf_counter() - t0})
        emit({"event": "shard", "shard": s})
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return None
    return _finish(out, cfg, shape, n_shards, provenance)


def _finish(out: Path, cfg: CoupleConfig, shape, n_shards: int, provenance: dict) -> dict:
    shards, stats, nfe = [], PathStats(math.prod(shape)), 0
    for s in range(n_shards):
        info = _shard_done(out, s)
        if info is None:
            raise UserError(f"shard {shard_name(s)} is missing or corrupt after generation")
        shards.append({k: info[k] for k in ("file", "start", "count", "sha256")})
        stats.merge(info["stats"])
        nfe = max(nfe, info["nfe"])
    metrics = stats.result()
    m = min(cfg.ot_subsample, cfg.n)
    x0s, x1s = [], []
    for info in shards:   # the first m pairs by index, for the exact OT reference
        if sum(len(x) for x in x0s) >= m:
            break
        t = ckpt.load_tensors(out / info["file"])
        x0s.append(t["x0"]), x1s.append(t["x1"])
    metrics["ot_cost"] = ot_cost(torch.cat(x0s)[:m], torch.cat(x1s)[:m])
    metrics["ot_subsample"] = m
    manifest = {"format": "rectflow/pairs", "version": 1, **provenance, "shape": list(shape),
                "n": cfg.n, "plan": cfg.plan(), "nfe": nfe,
                "shards": shards, "metrics": metrics}
    ckpt.atomic_write_json(out / MANIFEST, manifest)
    return manifest


_PLAN_NAMES = {"teacher_sha256": "teacher weights (sha256)", "noise_block": "noise block size"}


def check_plan(out: Path, plan: dict) -> str:
    """'new' for an empty folder, 'resume' if the folder was started with the same plan,
    'complete' if it is finished; a different plan is an error (nothing is touched)."""
    if not out.exists() or not any(p for p in out.iterdir() if not _is_temp(p)):
        return "new"
    if not (out / PLAN).is_file():
        raise UserError(f"{out} exists and is not a coupling dataset; choose another --out "
                        "or pass --overwrite")
    old = ckpt.read_json(out / PLAN)
    if old != plan:
        diff = [_PLAN_NAMES.get(k, "--" + k.replace("_", "-"))
                for k in sorted(set(old) | set(plan)) if old.get(k) != plan.get(k)]
        raise UserError(f"{out} was started with different {', '.join(diff)}; rerun with the "
                        "same arguments to resume, or pass --overwrite to start again")
    return "complete" if (out / MANIFEST).is_file() else "resume"
