"""Class-conditional flows and classifier-free guidance, for every stage.

A conditional model is called ``model(x, t, y=labels)``; index ``C`` (the number of classes)
is "no label", and ``y=None`` means it too. Training replaces a share ``label_dropout`` of the
labels by it, so one network gives both the conditional velocity ``v(x, t, y)`` and the
unconditional one ``v(x, t, ∅)``. Sampling with guidance ``w`` follows

    v_w(x, t, y) = v(x, t, ∅) + w · (v(x, t, y) - v(x, t, ∅))

(w = 0 unconditional, w = 1 plain conditional, w > 1 sharper classes, less diversity).

Coupling stores each pair's label beside it (``y`` in every shard, the guidance in the
manifest); reflow trains on the (x0, x1, y) triples with the same label dropout, so a reflowed
model still serves every guidance; a distilled student learns the guided map its pairs were
made with (no dropout: ``w`` is baked in, and the student still takes ``y``).

Labels are addressed by index like the noise: pair ``i`` draws its class from the training
class frequencies with the generator of ``(seed, i // BLOCK)``, so labelled pairs are
byte-identical for any batch size and number of processes.
"""
from __future__ import annotations

import math

import torch

from . import solvers
from ..errors import UserError


# ------------------------------------------------------------------------------- options
def guidances(text: str | float) -> list[float]:
    """The guidance weights of an ``EvalConfig.guidance`` string such as ``"0,1,2"``."""
    parts = [p for p in str(text).split(",") if p.strip()]
    try:
        ws = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"guidance must be comma-separated numbers, got {text!r}") from None
    if not ws or any(not math.isfinite(w) or w < 0 or w > 100 for w in ws):
        raise UserError(f"guidance must be numbers in 0..100, got {text!r}")
    return list(dict.fromkeys(ws))


def lead_guidance(ws: list[float]) -> float:
    return 1.0 if 1.0 in ws else ws[0]


# ------------------------------------------------------------------------ training pairs


# -------------------------------------------------------------------- guided velocities
class Guided:
    """``v_w(x, t, y)`` of a conditional network under classifier-free guidance ``w``."""

    def __init__(self, objective, model, num_classes: int, guidance: float = 1.0):
        self.objective, self.model, self.null, self.w = objective, model, num_classes, guidance

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def v(labels):
            return self.objective.velocity(self.model, y=labels)(x, t)
        if self.w == 1.0:
            return v(y)
        vu = v(torch.full_like(y, self.null))
        if self.w == 0.0:
            return vu
        return vu + self.w * (v(y) - vu)

    def bind(self, y: torch.Tensor, chunk: int | None = None) -> "Labelled":
        return Labelled(self, y, chunk)


class Labelled:
    """A plain ``v(x, t)`` for rows labelled ``y`` (a call on fewer rows uses the leading
    labels, as the path metrics do). With ``chunk`` the network always sees ``chunk`` rows
    (zero-padded, labels padded with "no label"), as :func:`rectflow.core.solvers.chunked`."""

    def __init__(self, guided: Guided, y: torch.Tensor, chunk: int | None = None):
        self.guided, self.y, self.chunk = guided, y, chunk

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.y[:x.shape[0]].to(x.device)
        if self.chunk is None:
            return self.guided(x, t, y)
        c, outs = self.chunk, []
        for i in range(0, x.shape[0], c):
            xs, ts, ys = x[i:i + c], t[i:i + c], y[i:i + c]
            n = xs.shape[0]
            if n < c:
                xs = torch.cat([xs, xs.new_zeros((c - n, *xs.shape[1:]))])
                ts = torch.cat([ts, ts.new_zeros(c - n)])
                ys = torch.cat([ys, ys.new_full((c - n,), self.guided.null)])
            outs.append(self.guided(xs, ts, ys)[:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def solve(velocity, x0: torch.Tensor, method: str = "euler", **kw) -> solvers.Solution:
    """:func:`rectflow.core.solvers.solve`, also for labelled velocities: dopri5 evaluates only the
    rows still stepping, so it solves one class at a time (each row has its own steps, so the
    result is the same as one joint solve)."""
    if not (isinstance(velocity, Labelled) and method == "dopri5"):
        return solvers.solve(velocity, x0, method=method, **kw)
    if kw.get("observer") is not None or kw.get("record"):
        raise UserError("dopri5 on a conditional model records no path; use a fixed-grid "
                        "solver for path metrics")
    y = velocity.y[:x0.shape[0]]
    x, nfe = torch.empty_like(x0), torch.zeros(x0.shape[0], dtype=torch.float64)
    for c in torch.unique(y).tolist():
        rows = (y == c).nonzero().squeeze(1)
        sol = solvers.solve(Labelled(velocity.guided, y[rows], velocity.chunk), x0[rows],
                            method=method, **kw)
        x[rows] = sol.x
        nfe[rows] = sol.nfe_per_sample.double() if sol.nfe_per_sample is not None else sol.nfe
    return solvers.Solution(x=x, nfe=float(nfe.mean()), times=[0.0, 1.0],
                            nfe_max=int(nfe.max()), nfe_per_sample=nfe)


def guided(checkpoint, guidance: float = 1.0, *, ema: bool = True, device="cpu",
           module=None) -> Guided:
    """The guided velocity of a conditional model folder."""
    card = checkpoint.card
    net = checkpoint.load_model(ema, device, module)
    return Guided(checkpoint.objective(), net, len(card.classes), guidance)


def check_guidance(card, guidance: float) -> None:
    if not card.conditional and guidance != 1.0:
        raise UserError(f"guidance {guidance:g} needs a conditional model (trained with "
                        "conditional); this one is unconditional")


# ------------------------------------------------------------------------------- couple


# ------------------------------------------------------------------------------- sample


def sample_velocity(checkpoint, y: torch.Tensor | None, guidance: float, *, ema=True,
                    device="cpu", module=None):
    check_guidance(checkpoint.card, guidance)
    if y is None:
        return checkpoint.velocity(ema=ema, device=device, module=module)
    return guided(checkpoint, guidance, ema=ema, device=device, module=module).bind(y)
