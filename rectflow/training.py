"""The one training loop: train, reflow and distill differ only in their pair source, time
distribution and loss.

It runs on Accelerate (``accelerator.prepare``/``backward``/``accumulate``/``clip_grad_norm_``,
mixed precision, trackers), so the same code serves one CPU, ``torchrun`` on CPUs (gloo) and
``accelerate launch`` on GPUs. ``batch_size`` is the global batch of one optimizer step; each
process takes its slice of the same global batch, so results do not depend on the number of
processes beyond float reduction order. Data, noise and t for step ``s`` come from generators
seeded by ``(seed, s)``; with the optimizer state and EMA saved in each snapshot, a resumed run
continues bit for bit where it stopped.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator

from . import checkpoint as ckpt
from .couplings import PairSource
from .errors import TrainingDiverged, UserError
from .path import TimeDist, interpolate, target_velocity
from .seeding import derive_seed, generator

LOSSES = ("l2", "pseudo-huber")
Callback = Callable[[dict], None]


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 2048
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    grad_accum: int = 1
    mixed_precision: str = "no"
    loss: str = "l2"
    huber_c: float | None = None      # None: 0.00054 * sqrt(D), as 2-RF++
    time_dist: TimeDist = field(default_factory=TimeDist)
    seed: int = 0
    save_every: int = 1000
    log_every: int = 50
    log_with: str | None = None

    def validate(self, world: int = 1) -> None:
        """Check every setting; ``world`` processes must split each micro-batch evenly."""
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")
        if self.warmup < 0 or self.grad_clip < 0:
            raise UserError("--warmup and --grad-clip must be >= 0")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError("--mixed-precision must be one of no, fp16, bf16")
        if self.batch_size % (self.grad_accum * world):
            raise UserError(f"--batch-size {self.batch_size} must be divisible by grad-accum x "
                            f"processes = {self.grad_accum * world}")
        if self.log_with is not None:
            _check_tracker(self.log_with)

    def to_json(self) -> dict:
        d = asdict(self)
        d["time_dist"] = self.time_dist.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["time_dist"] = TimeDist.from_json(d.get("time_dist", {"kind": "uniform"}))
        return cls(**d)


def make_accelerator(**kwargs) -> Accelerator:
    """An ``Accelerator`` that also shares the work under plain ``torchrun`` on CPUs.

    Accelerate only picks its multi-CPU (gloo) mode when told ``cpu=True`` (``accelerate launch
    --cpu`` sets that); under ``torchrun`` on a machine without CUDA it would otherwise give
    every process a world of one, and each would train and write on its own."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        kwargs["cpu"] = True
    return Accelerator(**kwargs)


TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
            "comet_ml": "comet_ml", "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}


def _check_tracker(name: str) -> None:
    """Accelerate silently drops a tracker whose package is missing; say so instead."""
    import importlib.util
    if name not in TRACKERS:
        raise UserError(f"unknown --log-with {name!r}; choose from {', '.join(TRACKERS)}")
    if importlib.util.find_spec(TRACKERS[name]) is None:
        raise UserError(f"--log-with {name} needs the {TRACKERS[name]} package "
                        f"(pip install {TRACKERS[name]})")


def flow_loss(model, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, loss: str = "l2",
              huber_c: float = 0.0) -> torch.Tensor:
    """Regress v(x_t, t) onto x1 - x0. L2 is the mean squared error per element; pseudo-Huber
    is sqrt(‖diff‖² + c²) - c per sample (2-RF++). With t fixed at 0 this is exactly one-step
    distillation: x0 + v(x0, 0) ≈ x1."""
    pred = model(interpolate(x0, x1, t), t)
    diff = (pred.float() - target_velocity(x0, x1).float()).flatten(1)
    if loss == "l2":
        per = diff.pow(2).mean(1)
    else:
        per = torch.sqrt(diff.pow(2).sum(1) + huber_c**2) - huber_c
    return per.mean()


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


def _seed_dropout(seed: int, device: torch.device) -> None:
    """Seed only the generators dropout draws from: ``torch.manual_seed`` would also queue
    lazy seeding of every accelerator backend on each call (a measurable cost per step)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None   # a line torn by a kill in the middle of an append


def _truncate_log(path: Path, upto: int) -> None:
    """Keep log lines of steps <= upto, so a resumed run's log has no step twice."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if (s := _step_of(ln)) is not None and s <= upto]
    ckpt.atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def _kept(out: Path) -> str:
    """What a diverged run leaves behind, for its error message."""
    snap = ckpt.latest_snapshot(out)
    if snap is None:
        return "no checkpoint was saved before it (try a lower --lr or check the data)"
    return f"the last good checkpoint ({snap.name}) is kept in {out}"


def fit(model: torch.nn.Module, source: PairSource, cfg: TrainConfig, out: str | Path,
        base_config: dict, resume: bool = False, callback: Callback | None = None,
        accelerator: Accelerator | None = None) -> dict:
    """Train ``model`` on pairs from ``source``; write snapshots and weights into ``out``.

    ``base_config`` is written as ``config.json`` with ``steps_done`` and ``complete`` added at
    every save. Returns a summary dict (final loss, samples/s, steps run)."""
    out = Path(out)
    acc = accelerator or make_accelerator(mixed_precision=cfg.mixed_precision,
                                          gradient_accumulation_steps=cfg.grad_accum,
                                          log_with=cfg.log_with, project_dir=str(out))
    world, rank = acc.num_processes, acc.process_index
    cfg.validate(world)
    micro_global = cfg.batch_size // cfg.grad_accum
    local = micro_global // world
    dim = math.prod(source.shape)
    huber_c = cfg.huber_c if cfg.huber_c is not None else 0.00054 * math.sqrt(dim)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    start = 0
    snap = ckpt.latest_snapshot(out) if resume else None
    if snap is not None:
        state = ckpt.load_snapshot(snap)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for k, v in state["ema"].items():
            ema.shadow[k].copy_(v)
        start = int(state["meta"]["step"])
    model, optimizer = acc.prepare(model, optimizer)
    ema.shadow = {k: v.to(acc.device) for k, v in ema.shadow.items()}
    ema.track(acc.unwrap_model(model))
    log_path = out / "metrics.jsonl"
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, start)
    if cfg.log_with:
        acc.init_trackers("rectflow", config={k: str(v) for k, v in cfg.to_json().items()})

    def emit(event: dict) -> None:
        if callback is not None and acc.is_main_process:
            callback(event)

    def save(step: int) -> None:
        raw = acc.unwrap_model(model)
        if acc.is_main_process:
            weights = {k: v.detach().float() for k, v in raw.state_dict().items()}
            ckpt.save_snapshot(out, step, weights, ema.state_dict(), optimizer.state_dict(),
                               {"seed": cfg.seed, "world": world})
            ckpt.save_tensors(out / "model.safetensors", weights)
            ckpt.save_tensors(out / "ema.safetensors", ema.state_dict())
            ckpt.atomic_write_json(out / ckpt.CONFIG, {**base_config, "steps_done": step,
                                                       "complete": step >= cfg.steps})
        acc.wait_for_everyone()
        emit({"event": "save", "step": step})

    pending: list[torch.Tensor] = []   # per-step losses not yet checked (no sync every step)
    last_logged = start
    t_log = time.perf_counter()
    summary = {"start_step": start, "steps": cfg.steps}
    emit({"event": "start", "step": start, "steps": cfg.steps})

    def flush(step: int) -> float:
        nonlocal pending, last_logged, t_log
        losses = acc.reduce(torch.stack(pending), reduction="mean").float().cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise TrainingDiverged(last_logged + i + 1, float(losses[i]), _kept(out))
        now = time.perf_counter()
        rate = (step - last_logged) * cfg.batch_size / max(now - t_log, 1e-9)
        loss = float(losses.mean())
        rec = {"step": step, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
               "samples_per_s": rate}
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if cfg.log_with:
            acc.log({"loss": loss, "lr": rec["lr"]}, step=step)
        emit({"event": "step", "steps": cfg.steps, **rec})
        pending, last_logged, t_log = [], step, time.perf_counter()
        summary.update(final_loss=loss, samples_per_s=rate)
        return loss

    model.train()
    step = start
    for step in range(start + 1, cfg.steps + 1):
        lr = cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        _seed_dropout(derive_seed(cfg.seed, "dropout", step, rank), acc.device)
        for micro in range(cfg.grad_accum):
            index = (step - 1) * cfg.grad_accum + micro
            x0, x1 = source.batch(index, micro_global)
            t = cfg.time_dist.sample(micro_global, generator(cfg.seed, "time", index))
            sl = slice(rank * local, (rank + 1) * local)
            x0, x1, t = (a[sl].to(acc.device, non_blocking=True) for a in (x0, x1, t))
            with acc.accumulate(model):
                loss = flow_loss(model, x0, x1, t, cfg.loss, huber_c)
                acc.backward(loss)
                if acc.sync_gradients and cfg.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        ema.update(step)
        pending.append(loss.detach().float())
        if step % cfg.log_every == 0 or step == cfg.steps:
            flush(step)
        if step % cfg.save_every == 0 or step == cfg.steps:
            if pending:
                flush(step)
            save(step)
    if start >= cfg.steps:   # nothing left to run; still make sure the folder says complete
        save(start)
    if cfg.log_with:
        acc.end_training()
    summary["end_step"] = max(step, start)
    return summary
