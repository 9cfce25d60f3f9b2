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
class frequencies with the generator of ``(seed, i // BLOCK)`` (:func:`rectflow.core.seeding.
blocks`), so labelled pairs are byte-identical for any batch size and number of processes.
"""
from __future__ import annotations

import math

import torch

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
    """``v_w(x, t, y)`` of a conditional network under classifier-free guidance ``w``: a
    velocity like any other, whose labels come through the solvers' extras
    (``solve(Guided(...), x0, extras={"y": y})``). ``y=None`` is the unconditional velocity."""

    def __init__(self, objective, model, num_classes: int, guidance: float = 1.0):
        self.objective, self.model, self.null, self.w = objective, model, num_classes, guidance

    def __call__(self, x: torch.Tensor, t: torch.Tensor,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        def v(labels):
            return self.objective.velocity(self.model, y=labels)(x, t)
        vu = None
        if y is None or self.w != 1.0:
            vu = v(torch.full((x.shape[0],), self.null, dtype=torch.int64, device=x.device))
        if y is None or self.w == 0.0:
            return vu
        vy = v(y.to(x.device))
        return vy if self.w == 1.0 else vu + self.w * (vy - vu)


def guided(checkpoint, guidance: float = 1.0, *, ema: bool = True, device="cpu",
           module=None) -> Guided:
    """The guided velocity of a conditional model folder."""
    card = checkpoint.card
    net = checkpoint.load_model(ema, device, module)
    return Guided(checkpoint.objective(), net, len(card.classes), guidance)


def check_guidance(card, guidance: float) -> None:
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
            or not math.isfinite(guidance):
        raise UserError(f"guidance must be a finite number, got {guidance!r}")
    if not card.conditional and guidance != 1.0:
        raise UserError(f"guidance {guidance:g} needs a conditional model (trained with "
                        "conditional); this one is unconditional")


def sample_velocity(checkpoint, y: torch.Tensor | None, guidance: float, *, ema=True,
                    device="cpu", module=None):
    """The velocity ``sample`` solves: the plain one, or the guided one when labelled."""
    check_guidance(checkpoint.card, guidance)
    if y is None:
        return checkpoint.velocity(ema=ema, device=device, module=module)
    return guided(checkpoint, guidance, ema=ema, device=device, module=module)
