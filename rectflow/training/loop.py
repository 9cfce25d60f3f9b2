"""The one training loop: train, reflow and distill differ only in their pair source and
objective (time distribution, loss).

It runs on Accelerate (``prepare``/``backward``/``accumulate``/``clip_grad_norm_``, mixed
precision, trackers), so the same code serves one CPU, ``torchrun`` on CPUs (gloo) and
``accelerate launch`` on GPUs. ``batch_size`` is the global batch of one optimizer step: step
``s`` draws that whole batch (pairs and times from generators seeded by ``(seed, s)``), cuts it
into ``grad_accum`` micro-batches and each micro-batch into one slice per process. So a run
with accumulation sees the same data as one large batch, a run on W processes the same as on
one, and a resumed run (optimizer and EMA come back from the snapshot) continues bit for bit.

The parts, in the order the loop uses them: :class:`EMA` (the weights' moving average),
:class:`Snapshots` (resume state, weights and card on disk), :class:`TrainLog` (the loss of
each step, its log file and the divergence check) and :func:`train_step` (one optimizer step).
"""
from __future__ import annotations

from ..machine.accelerator import make_accelerator
import importlib.util
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator

from ..models.dropout import global_rows
from ..records import checkpoint as ckpt
from .pairs import PairSource
from ..io import graceful_interrupts
from ..errors import CheckpointError, StageInterrupted, TrainingDiverged, UserError
from ..io.files import append_bytes
from ..objectives import Objective, build_objective
from ..options import TrainConfig
from ..records import RunCard
from ..records.snapshot import MetricsLine
from ..core.seeding import derive_seed, generator
from ..machine import threads

Callback = Callable[[dict], None]


def check_run(cfg: TrainConfig, world: int = 1, shape: tuple | None = None) -> None:
    """What the option bounds cannot see: the split of a batch, an installed tracker, a
    compiler for ``compile`` (inductor builds C++ on a CPU), images for ``channels_last``."""
    cfg.validate()
    if cfg.channels_last and shape is not None and len(shape) != 3:
        raise UserError(f"channels_last is for images; this data has shape {list(shape)}")
    if cfg.compile and not torch.cuda.is_available() and not any(
            shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++")):
        raise UserError("compile: torch.compile on CPU needs a C++ compiler (g++ or clang++ "
                        "on PATH, or CXX); install one or train without --compile")
    if cfg.batch_size % (cfg.grad_accum * world):
        raise UserError(f"batch_size {cfg.batch_size} must be divisible by grad_accum x "
                        f"processes = {cfg.grad_accum * world}")
    if cfg.log_with is not None and importlib.util.find_spec(cfg.log_with) is None:
        # Accelerate silently drops a tracker whose package is missing; say so instead
        raise UserError(f"log_with {cfg.log_with} needs the {cfg.log_with} package "
                        f"(pip install {cfg.log_with})")


# ----------------------------------------------------------------------------------- parts
class EMA:
    """Exponential moving average of the weights, with the usual warm-up of the decay.

    ``track(model)`` binds the live tensors once; each update is then two fused foreach ops."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
        self._float: tuple[list, list] = ([], [])
        self._other: list[tuple[torch.Tensor, torch.Tensor]] = []

    def track(self, model: torch.nn.Module) -> None:
        self._float, self._other = ([], []), []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self._float[0].append(self.shadow[k])
                self._float[1].append(v)
            else:
                self._other.append((self.shadow[k], v))

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        shadows, live = self._float
        if shadows:
            torch._foreach_mul_(shadows, d)
            torch._foreach_add_(shadows, [v.float() for v in live], alpha=1 - d)
        for s, v in self._other:
            s.copy_(v)

    def state_dict(self) -> dict:
        return self.shadow


def _finite(weights: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())


class Snapshots:
    """Resume state and the folder's weights and card, written by the main process only.
    Non-finite weights are never saved: the run stops as diverged and keeps the last good
    snapshot."""

    def __init__(self, out: Path, card: RunCard, acc: Accelerator, steps: int):
        self.out, self.card, self.acc, self.steps = out, card, acc, steps

    def restore(self, model, optimizer, ema: EMA) -> int:
        snap = ckpt.latest_snapshot(self.out)
        if snap is None:
            return 0
        state = ckpt.load_snapshot(snap)
        try:   # tensors that do not fit this model: an edited or foreign snapshot
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for k, v in state["ema"].items():
                ema.shadow[k].copy_(v)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{snap} does not fit this run's model "
                                  f"({type(e).__name__}: {str(e)[:160]})") from None
        return int(state["meta"]["step"])

    def save(self, step: int, model, optimizer, ema: EMA, meta: dict) -> None:
        raw = self.acc.unwrap_model(model)
        if self.acc.is_main_process:
            weights = {k: v.detach().float() for k, v in raw.state_dict().items()}
            if not (_finite(weights) and _finite(ema.state_dict())):
                raise TrainingDiverged(step, float("nan"), kept(self.out), what="weights")
            ckpt.save_snapshot(self.out, step, weights, ema.state_dict(),
                               optimizer.state_dict(), meta)
            header = self.card.weights_metadata()
            ckpt.save_tensors(self.out / "model.safetensors", weights, header)
            ckpt.save_tensors(self.out / "ema.safetensors", ema.state_dict(), header)
            self.card.steps_done, self.card.complete = step, step >= self.steps
            self.card.write(self.out)
        self.acc.wait_for_everyone()


def kept(out: Path) -> str:
    """What a stopped run leaves behind, for its message."""
    snap = ckpt.latest_snapshot(out)
    if snap is None:
        return "no checkpoint was saved before it (try a lower lr or check the data)"
    return f"the last good checkpoint ({snap.name}) is kept in {out}"


class TrainLog:
    """The loss of each step (the mean over its micro-batches and processes), appended to
    ``metrics.jsonl`` every ``log_every`` steps; a non-finite loss stops the run. Losses are
    gathered lazily, so the loop does not synchronise with the device every step."""

    def __init__(self, out: Path, acc: Accelerator, cfg: TrainConfig, start: int,
                 emit: Callback):
        self.path, self.acc, self.cfg, self.emit = out / "metrics.jsonl", acc, cfg, emit
        self.pending: list[torch.Tensor] = []
        self.last, self.t_last = start, time.perf_counter()
        self.summary: dict = {"start_step": start, "steps": cfg.train_steps}
        if acc.is_main_process:
            self._truncate(start)

    def _truncate(self, upto: int) -> None:
        """Keep log lines of steps <= upto, so a resumed run's log has no step twice."""
        if not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_bytes().split(b"\n")
                if (s := _step_of(ln)) is not None and s <= upto]
        ckpt.atomic_write_bytes(self.path, b"\n".join(keep) + b"\n" if keep else b"")

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss)

    def flush(self, step: int, lr: float) -> None:
        if not self.pending:
            return
        losses = self.acc.reduce(torch.stack(self.pending), reduction="mean").float().cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise TrainingDiverged(self.last + i + 1, float(losses[i]), kept(self.path.parent))
        now = time.perf_counter()
        rate = (step - self.last) * self.cfg.batch_size / max(now - self.t_last, 1e-9)
        rec = MetricsLine(step=step, loss=float(losses.mean()), lr=lr, samples_per_s=rate)
        if self.acc.is_main_process:
            append_bytes(self.path, rec.line())
        if self.cfg.log_with:
            self.acc.log({"loss": rec.loss, "lr": lr}, step=step)
        self.emit({"event": "step", "steps": self.cfg.train_steps, **rec.to_json()})
        self.pending, self.last, self.t_last = [], step, time.perf_counter()
        self.summary.update(final_loss=rec.loss, samples_per_s=rate)


def _step_of(line: bytes) -> int | None:
    rec = MetricsLine.maybe(line)
    return None if rec is None else rec.step   # None: a line torn by a kill (or garbled)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then constant or a cosine decay towards 0 (reached one step
    after the last, ``cfg.train_steps``, so no step runs at lr 0). ``step`` counts from 1."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * step / cfg.warmup
    if cfg.lr_schedule == "cosine" and cfg.train_steps > cfg.warmup:
        done = min(1.0, (step - cfg.warmup) / (cfg.train_steps - cfg.warmup + 1))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * done))
    return cfg.lr


def _seed_dropout(seed: int, device: torch.device) -> None:
    """Seed only the generators dropout draws from (``torch.manual_seed`` would also queue
    lazy seeding of every accelerator backend on each call). Restored after each step.
    Every process gets the same seed: rectflow's dropout draws the mask of the whole global
    micro-batch and keeps its own rows (:func:`~rectflow.models.dropout.global_rows`)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def train_step(step: int, model, optimizer, objective: Objective, source: PairSource,
               cfg: TrainConfig, acc: Accelerator, forward=None) -> torch.Tensor:
    """One optimizer step on the global batch ``step - 1``; returns its mean loss (detached).
    ``forward`` (default ``model``) is what the loss calls: the compiled model with
    ``compile``."""
    forward = model if forward is None else forward
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    world, rank = acc.num_processes, acc.process_index
    micro = cfg.batch_size // cfg.grad_accum
    local = micro // world
    x0, x1, *extra = source.batch(step - 1, cfg.batch_size)   # extra: {"y": labels}
    cond = extra[0] if extra else {}
    times = objective.sample_times(cfg.batch_size, generator(cfg.seed, "time", step - 1))
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(cfg, step)
    _seed_dropout(derive_seed(cfg.seed, "dropout", step), acc.device)
    total = torch.zeros((), device=acc.device)
    for m in range(cfg.grad_accum):
        rows = slice(m * micro + rank * local, m * micro + (rank + 1) * local)
        a0, a1 = (a[rows].to(acc.device, non_blocking=True, memory_format=layout)
                  for a in (x0, x1))
        tm, c = ({k: v[rows].to(acc.device, non_blocking=True) for k, v in d.items()}
                 for d in (times, cond))
        with acc.accumulate(model), global_rows(rank * local, micro):
            loss = objective.loss(forward, a0, a1, tm, **c).mean()
            acc.backward(loss)
            if acc.sync_gradients and cfg.grad_clip > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        total = total + loss.detach().float()
    return total / cfg.grad_accum


# ------------------------------------------------------------------------------- the loop
def fit(model: torch.nn.Module, source: PairSource, cfg: TrainConfig, out: str | Path,
        card: RunCard, resume: bool = False, callback: Callback | None = None,
        accelerator: Accelerator | None = None) -> dict:
    """Train ``model`` on pairs from ``source``; write snapshots, weights and ``card`` into
    ``out``. Returns a summary (final loss, samples/s, steps run).

    Ctrl-C or SIGTERM (as :class:`~rectflow.errors.StageInterrupted` or KeyboardInterrupt)
    saves a snapshot at the last finished step before the exception goes on."""
    out = Path(out)
    acc = accelerator or make_accelerator(mixed_precision=cfg.mixed_precision,
                                          gradient_accumulation_steps=cfg.grad_accum,
                                          log_with=cfg.log_with, project_dir=str(out))
    check_run(cfg, acc.num_processes, source.shape)
    objective = build_objective(cfg, source.shape)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    snaps = Snapshots(out, card, acc, cfg.train_steps)
    start = snaps.restore(model, optimizer, ema) if resume else 0
    model, optimizer = acc.prepare(model, optimizer)
    # the compiled forward shares the parameters: the plain module (what snapshots save) trains
    forward = torch.compile(model) if cfg.compile else model
    ema.shadow = {k: v.to(acc.device) for k, v in ema.shadow.items()}
    ema.track(acc.unwrap_model(model))
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    def emit(event: dict) -> None:
        if callback is not None and acc.is_main_process:
            callback(event)

    log = TrainLog(out, acc, cfg, start, emit)
    if cfg.log_with:
        acc.init_trackers("rectflow", config={k: str(v) for k, v in cfg.to_json().items()})
    meta = {"seed": cfg.seed, "world": acc.num_processes}
    emit({"event": "start", "step": start, "steps": cfg.train_steps})
    model.train()
    done = start
    # on CPU, the thread count is measured on these steps unless the user fixed it
    tuner = threads.tuner(acc.num_processes, say=lambda text: emit({"event": "note",
                                                                   "text": text})) \
        if acc.device.type == "cpu" else None

    def one_step(step: int) -> None:
        log.add(train_step(step, model, optimizer, objective, source, cfg, acc, forward))
        ema.update(step)
    with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []), \
            graceful_interrupts() as stop:
        try:
            for step in range(start + 1, cfg.train_steps + 1):
                stop.check()   # a SIGINT/SIGTERM is acted on between steps
                threads.timed(tuner, lambda: one_step(step))
                done = step
                last = step == cfg.train_steps
                if step % cfg.log_every == 0 or step % cfg.save_every == 0 or last:
                    log.flush(step, learning_rate(cfg, step))
                if step % cfg.save_every == 0 or last:
                    snaps.save(step, model, optimizer, ema, meta)
                    emit({"event": "save", "step": step})
        except (KeyboardInterrupt, StageInterrupted) as e:
            if done > start and not (done % cfg.save_every == 0 or done == cfg.train_steps):
                log.flush(done, learning_rate(cfg, done))
                snaps.save(done, model, optimizer, ema, meta)
            raise StageInterrupted(getattr(e, "signum", signal.SIGINT), done) from None
    if start >= cfg.train_steps:   # nothing left to run; still make sure the folder says complete
        snaps.save(start, model, optimizer, ema, meta)
    if cfg.log_with:
        acc.end_training()
    log.summary["end_step"] = max(done, start)
    return log.summary
