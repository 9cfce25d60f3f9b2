"""Writing a coupling dataset: noise in, the teacher's ODE solved, (x0, z1) shards out.

Determinism: the noise of index ``i`` comes from the generator seeded by ``(seed, i // BLOCK)``
and the teacher is always evaluated on chunks of ``eval_chunk`` rows, so shards are
byte-identical for any ``--batch-size`` and any number of processes (for fixed-grid solvers;
``dopri5`` picks its steps per batch, so its pairs depend on the batch).

Resumption: shard ``s`` is done when its sidecar ``pairs-s.json`` exists and its sha256 still
matches; a rerun writes only the missing shards. Process ``r`` of ``W`` owns shards
``s ≡ r (mod W)``; the main process writes ``manifest.json`` once all are done.
"""
from __future__ import annotations

import hashlib
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
    ot_subsample: int = 2000

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
        """The arguments that determine the bytes of the dataset (batch size does not)."""
        d = asdict(self)
        d.pop("batch_size")
        if self.solver != "dopri5":
            d.pop("rtol"), d.pop("atol")
        return d


def block_noise(start: int, stop: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise for indices [start, stop): each BLOCK of indices from its own generator."""
    parts = []
    for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        z = torch.randn((BLOCK, *shape), generator=generator(seed, "noise", b))
        lo, hi = max(start, b * BLOCK) - b * BLOCK, min(stop, (b + 1) * BLOCK) - b * BLOCK
        parts.append(z[lo:hi])
    return torch.cat(parts)


def _shard_done(out: Path, s: int) -> dict | None:
    side = out / shard_name(s).replace(".safetensors", ".json")
    if not side.is_file() or not (out / shard_name(s)).is_file():
        return None
    info = ckpt.read_json(side)
    if ckpt.sha256_file(out / shard_name(s)) != info.get("sha256"):
        return None   # torn or altered: regenerate it
    return info


def write_pairs(teacher: ckpt.Checkpoint, out: str | Path, cfg: CoupleConfig, provenance: dict,
                callback: Callable[[dict], None] | None = None,
                accelerator: Accelerator | None = None) -> dict | None:
    """Generate (or finish) the coupling dataset in ``out``. Returns the manifest on the main
    process (None elsewhere)."""
    cfg.validate()
    out = Path(out)
    acc = accelerator or Accelerator()
    shape = teacher.shape
    model = teacher.load_model(ema=cfg.use_ema, device=acc.device)
    velocity = chunked(model, cfg.eval_chunk)
    n_shards = math.ceil(cfg.n / cfg.shard_size)
    mine = [s for s in range(n_shards) if s % acc.num_processes == acc.process_index]
    tracked = cfg.n if cfg.metrics_subsample is None else min(cfg.n, cfg.metrics_subsample)
    emit = callback if (callback is not None and acc.is_main_process) else (lambda e: None)
    emit({"event": "start", "total": cfg.n, "shards": n_shards})
    done_pairs = 0
    for s in mine:
        lo, hi = s * cfg.shard_size, min((s + 1) * cfg.shard_size, cfg.n)
        if _shard_done(out, s) is not None:
            done_pairs += hi - lo
            emit({"event": "progress", "done": done_pairs * acc.num_processes, "skipped": True})
            continue
        t0 = time.perf_counter()
        stats = PathStats(math.prod(shape))
        x1s, nfe = [], 0
        for a in range(lo, hi, cfg.batch_size):
            b = min(a + cfg.batch_size, hi)
            x0 = block_noise(a, b, shape, cfg.seed).to(acc.device)
            k = max(0, min(b, tracked) - a)   # rows whose path metrics are tracked
            obs = None
            if k:
                obs = (lambda t, dt, z, v, k=k: stats.observer(t, dt, z[:k], v[:k]))
            sol = solve(velocity, x0, method=cfg.solver, steps=cfg.steps, rtol=cfg.rtol,
                        atol=cfg.atol, observer=obs)
            if k:
                stats.finish(x0[:k], sol.x[:k])
            nfe = max(nfe, sol.nfe)
            x1s.append(sol.x.cpu())
            done_pairs += b - a
            emit({"event": "progress", "done": done_pairs * acc.num_processes})
        x0 = block_noise(lo, hi, shape, cfg.seed)
        sha = ckpt.save_tensors(out / shard_name(s), {
            "x0": x0, "x1": torch.cat(x1s), "index": torch.arange(lo, hi, dtype=torch.int64)})
        ckpt.atomic_write_json(out / shard_name(s).replace(".safetensors", ".json"), {
            "file": shard_name(s), "start": lo, "count": hi - lo, "sha256": sha,
            "nfe": nfe, "stats": stats.state(), "seconds": time.perf_counter() - t0})
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
                "n": cfg.n, "plan": cfg.plan(), "noise_block": BLOCK, "nfe": nfe,
                "shards": shards, "metrics": metrics}
    ckpt.atomic_write_json(out / MANIFEST, manifest)
    return manifest


def plan_hash(plan: dict) -> str:
    import json
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def check_plan(out: Path, plan: dict) -> str:
    """'new' for an empty folder, 'resume' if the folder was started with the same plan,
    'complete' if it is finished; a different plan is an error (nothing is touched)."""
    if not out.exists() or not any(out.iterdir()):
        return "new"
    if not (out / PLAN).is_file():
        raise UserError(f"{out} exists and is not a coupling dataset; choose another --out "
                        "or pass --overwrite")
    old = ckpt.read_json(out / PLAN)
    if old != plan:
        diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        raise UserError(f"{out} was started with different arguments ({', '.join(diff)}); "
                        "rerun with the same ones to resume, or pass --overwrite")
    return "complete" if (out / MANIFEST).is_file() else "resume"
