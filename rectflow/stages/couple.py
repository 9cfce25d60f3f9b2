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

from ..core.guidance import Guided, check_guidance, guided
from ..data.labels import prior
import math
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator

from ..errors import PlanMismatch, UserError
from ..io import graceful_interrupts
from ..core.metrics import PathStats, ot_cost
from ..options import CoupleConfig
from ..records import PairsManifest, PairsPlan, Shard, shard_name, sidecar_name, versions
from ..records.snapshot import ShardSidecar
from ..io.files import load_tensors, save_tensors, sha256_file
from ..core.seeding import BLOCK, block_noise, blocks
from ..core.solvers import chunked, solve
from ..machine.accelerator import make_accelerator
from ..io.remove import JOURNAL, MARKER, remove_made, stale_temps


def make_plan(cfg: CoupleConfig, teacher_sha256: str) -> PairsPlan:
    """The arguments that determine the dataset (batch size does not), checked on resume."""
    d = cfg.to_json()
    d.pop("batch_size")
    if d.get("guidance") == 1.0:   # the default (and all an unconditional teacher takes)
        d.pop("guidance")
    for k in (("steps",) if cfg.solver == "dopri5" else ("rtol", "atol")):
        d.pop(k)
    return PairsPlan(settings=d, teacher_sha256=teacher_sha256, noise_block=BLOCK)


def _shard_done(out: Path, s: int) -> dict | None:
    side = out / sidecar_name(s)
    if not side.is_file() or not (out / shard_name(s)).is_file():
        return None
    info = ShardSidecar.read(side)   # a shard's sidecar: bookkeeping beside the shard
    if info.file != shard_name(s) or sha256_file(out / shard_name(s)) != info.sha256:
        return None   # torn, altered or another shard's: regenerate it
    return info.to_json()


def remove_stale_temps(out: Path) -> None:
    """Drop the temporary files of writes a killed run of this folder left half done: only
    those carrying the folder's own token (never a user's file, whatever its name)."""
    for p in stale_temps(out):
        remove_made(p)


def _solve_shard(velocity, extras: dict, cfg: CoupleConfig, x0: torch.Tensor, lo: int, device,
                 stats: PathStats, progress: Callable[[int], None]) -> tuple[torch.Tensor, int]:
    """z1 for the noise ``x0`` of the shard starting at index ``lo``; ``extras`` (the
    shard's labels for a conditional teacher) go beside the rows to the solver.

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
                    atol=cfg.atol, observer=obs,
                    extras={n: e[a:a + rows] for n, e in extras.items()})
        if k:
            stats.finish(z0[:k], sol.x[:k])
        nfe += sol.nfe * z0.shape[0]
        x1s.append(sol.x.cpu())
        progress(z0.shape[0])
    return torch.cat(x1s), nfe / max(1, x0.shape[0])


def write_pairs(model, shape: tuple[int, ...], out: str | Path,
                cfg: CoupleConfig, provenance: dict,
                callback: Callable[[dict], None] | None = None,
                accelerator: Accelerator | None = None, source=None,
                data_metrics: Callable | None = None) -> PairsManifest | None:
    """Generate (or finish) the coupling dataset in ``out`` with the teacher ``model``.
    Returns the manifest on the main process (None elsewhere). ``source`` (a
    :class:`rectflow.data.sources.Source`) draws x0 from a data set instead of N(0, I), by the same
    blocks of indices; ``data_metrics(x0)`` adds figures on the OT subsample's x0.

    Memory holds one shard at a time: each shard goes to disk, with a sidecar holding its
    checksum and metric sums, before the next one starts."""
    cfg.validate()
    out = Path(out)
    acc = accelerator or make_accelerator()
    labelled = isinstance(model, ConditionalTeacher)
    velocity = chunked(model.guide if labelled else model, cfg.eval_chunk)
    n_shards = math.ceil(cfg.n / cfg.shard_size)
    world = acc.num_processes
    mine = [s for s in range(n_shards) if s % world == acc.process_index]
    emit = callback if (callback is not None and acc.is_main_process) else (lambda e: None)
    finished = {s for s in mine if _shard_done(out, s) is not None}   # sidecars read first
    emit({"event": "start", "total": cfg.n, "shards": n_shards})
    done = 0

    def progress(k: int) -> None:   # the main process shows its own share times the world
        nonlocal done
        done += k
        emit({"event": "progress", "done": min(cfg.n, done * world)})

    def one_shard(s: int) -> None:
        lo, hi = s * cfg.shard_size, min((s + 1) * cfg.shard_size, cfg.n)
        if s in finished:
            progress(hi - lo)
            return
        t0 = time.perf_counter()
        stats = PathStats(math.prod(shape))
        x0 = block_noise(lo, hi, shape, cfg.seed) if source is None else \
            source.block(lo, hi, cfg.seed, BLOCK)
        y = model.labels(lo, hi, cfg.seed) if labelled else None
        x1, nfe = _solve_shard(velocity, {"y": y} if labelled else {}, cfg, x0, lo, acc.device,
                               stats, progress)
        sha = save_tensors(out / shard_name(s), {
            "x0": x0, "x1": x1, "index": torch.arange(lo, hi, dtype=torch.int64),
            **({"y": y} if labelled else {})})
        ShardSidecar(file=shard_name(s), start=lo, count=hi - lo, sha256=sha, nfe=nfe,
                     stats=stats.state(), process=acc.process_index,
                     seconds=time.perf_counter() - t0).write(out / sidecar_name(s))
        emit({"event": "shard", "shard": s})

    with graceful_interrupts() as stop:   # Ctrl-C/SIGTERM: stop between shards, keep them
        for s in mine:
            stop.check()
            one_shard(s)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return None
    return _finish(out, cfg, shape, n_shards, provenance, data_metrics)


def _finish(out: Path, cfg: CoupleConfig, shape, n_shards: int,
            provenance: dict, data_metrics: Callable | None = None) -> PairsManifest:
    shards, stats, nfe = [], PathStats(math.prod(shape)), 0.0
    for s in range(n_shards):
        info = _shard_done(out, s)
        if info is None:
            raise UserError(f"shard {shard_name(s)} is missing or corrupt after generation")
        shards.append(Shard(**{k: info[k] for k in ("file", "start", "count", "sha256")}))
        stats.merge(info["stats"])
        nfe += info["nfe"] * info["count"]
    metrics = stats.result()
    m = min(cfg.ot_subsample, cfg.n)
    x0s, x1s = [], []
    for sh in shards:   # the first m pairs by index, for the exact OT reference
        if sum(len(x) for x in x0s) >= m:
            break
        t = load_tensors(out / sh.file)
        x0s.append(t["x0"]), x1s.append(t["x1"])
    x0m, x1m = torch.cat(x0s)[:m], torch.cat(x1s)[:m]
    # transport and OT cost on the same m pairs, so the two can be compared
    metrics["transport_cost_subsample"] = float((x1m - x0m).flatten(1).pow(2).sum(1).mean())
    metrics["ot_cost"] = ot_cost(x0m, x1m)
    metrics["ot_subsample"] = m
    if data_metrics is not None:   # the OT cost between the source and target data themselves
        metrics.update(data_metrics(x0m))
    manifest = PairsManifest(shape=list(shape), n=cfg.n, shards=shards,
                             plan=make_plan(cfg, provenance["teacher"]["sha256"]).to_json(),
                             nfe=nfe / cfg.n, metrics=metrics, versions=versions(),
                             **provenance)
    manifest.write(out)
    return manifest


_PLAN_NAMES = {"teacher_sha256": "teacher weights (sha256)", "noise_block": "noise block size"}


def check_plan(out: Path, plan: PairsPlan) -> str:
    """'new' for an empty folder, 'resume' if the folder was started with the same plan,
    'complete' if it is finished; a different plan is an error (nothing is touched)."""
    if not out.exists() or all(p.name in (MARKER, JOURNAL)      # a killed first write's
                               for p in set(out.iterdir()) - set(stale_temps(out))):   # temps
        return "new"
    if not PairsPlan.path_in(out).is_file():
        raise UserError(f"{out} exists and is not a coupling dataset; choose another output "
                        "or pass overwrite")
    diff = PairsPlan.read(out).differences(plan)
    if diff:
        raise PlanMismatch(out, [_PLAN_NAMES.get(k, k) for k in diff])
    if PairsManifest.path_in(out).is_file():
        return "complete"
    for side in sorted(out.glob("pairs-*.json")):   # every sidecar read before anything is written
        ShardSidecar.read(side)
    return "resume"


class ConditionalTeacher:
    """What :func:`write_pairs` needs of a conditional teacher: the label of every pair index
    (:meth:`labels`) and the guided velocity (``guide``), which takes them as ``y``."""

    def __init__(self, guide: Guided, class_prior: torch.Tensor, classes: list[str]):
        self.guide, self.prior, self.classes = guide, class_prior, classes

    def labels(self, start: int, stop: int, seed: int) -> torch.Tensor:
        """Labels of indices [start, stop): each noise block's from its own generator."""
        return blocks(start, stop, seed, "labels",
                      lambda n, g: torch.multinomial(self.prior, n, replacement=True, generator=g))


def couple_teacher(checkpoint, cfg, device, module=None):
    """The teacher of ``couple``: a plain velocity, or a :class:`ConditionalTeacher`."""
    card = checkpoint.card
    check_guidance(card, cfg.guidance)
    if not card.conditional:
        return checkpoint.velocity(ema=cfg.use_ema, device=device, module=module)
    g = guided(checkpoint, cfg.guidance, ema=cfg.use_ema, device=device, module=module)
    return ConditionalTeacher(g, prior(card.data), list(card.classes))


def label_provenance(card, cfg) -> dict:
    return {"classes": list(card.classes), "guidance": cfg.guidance} if card.conditional else {}
